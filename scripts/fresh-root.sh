#!/usr/bin/env bash
# Prove the README's test command on a fresh Debian 12: a minimal root made by debootstrap (cached), a clone of this
# repository's committed HEAD in it, then `CI=true ./scripts/test` inside (a chroot in a private mount namespace),
# so a package installed by hand on this machine can no longer hide a missing install step.
#
#   scripts/fresh-root.sh              the fast check: setup from nothing, ruff, mypy, and the suites that call the
#                                      machine's programs (tests/test_programs.py, the audio rig, the daemon, the CLI,
#                                      the demo's end-to-end test): ~15 min from a warm cache
#   scripts/fresh-root.sh --full       the whole suite, exactly as CI runs it (the VM and real-server suites too)
#   scripts/fresh-root.sh -- ARGS...   scripts/test with these pytest arguments instead
#   scripts/fresh-root.sh clean        remove the cached root
#
# What the root starts with: Debian 12 minbase plus git and ca-certificates (a clone needs them) — no Python, no
# compiler, no sound server: scripts/setup.sh must install every package itself, from this machine's apt sources.
# What is lent from this machine, none of which installs anything for the project:
#   - its certificate authorities, pip.conf and the variables that point programs at them (machine_env), as every
#     machine of this kind has them;
#   - Go (/usr/local/go, read-only), the toolchain of the project's machines (Debian 12's golang is too old for
#     livekit-server); absent here, the real-server suite fails under CI=true as it would in CI;
#   - download caches (apt's .deb files, pip's wheels, Go's modules and build cache), so a run needs no second
#     download of the same files; a cache holds files, not installed packages.
# The root is unpacked anew for every run and removed after it. Needs root, debootstrap, unshare and chroot.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${VOICE_DEVICE_FRESH_CACHE:-$ROOT/.cache/fresh-root}"
SUITE=bookworm
MIRROR="${VOICE_DEVICE_VM_MIRROR:-http://deb.debian.org/debian}"
BASE_PACKAGES=(git ca-certificates)
FAST=(tests/test_programs.py tests/audio tests/daemon tests/test_cli.py tests/test_config.py tests/wire/test_demo.py)

# shellcheck source=lib/rootfs.sh
source "$ROOT/scripts/lib/rootfs.sh"

say() { echo "fresh-root: $*" >&2; }
die() { echo "fresh-root: $*" >&2; exit 1; }

base_tar() { echo "$CACHE/$SUITE-minbase-$(echo "$SUITE ${BASE_PACKAGES[*]}" | sha256sum | cut -c1-12).tar"; }

build_base() {
  local tar work
  tar="$(base_tar)"
  if [[ -f "$tar" ]]; then echo "$tar"; return; fi
  mkdir -p "$CACHE"
  work="$(mktemp -d "$CACHE/.root.XXXXXX")"
  say "debootstrap $SUITE minbase + ${BASE_PACKAGES[*]} (a few minutes, once; cached as $tar)"
  debootstrap_into "$work/root" "$SUITE" "$MIRROR" "${BASE_PACKAGES[@]}" \
    || { rm -rf "$work"; die "debootstrap failed (log above)"; }
  rm -f "$work"/root/var/cache/apt/archives/*.deb
  rm -rf "$work"/root/var/lib/apt/lists/*
  tar -C "$work/root" --numeric-owner -cf "$tar.part" .
  mv "$tar.part" "$tar"
  rm -rf "$work"
  echo "$tar"
}

# The run, inside `unshare --mount`: every mount below dies with it.
inside() {
  local root="$1"; shift
  mount --make-rprivate /
  mount --bind "$root" "$root"  # `/` in the chroot is a mount point, as `ip netns` expects (mount --make-rslave /)
  mount -t proc proc "$root/proc"
  mount -t sysfs sys "$root/sys"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
  mount -t tmpfs tmpfs "$root/run"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  local lend
  if [[ -x /usr/local/go/bin/go ]]; then
    mkdir -p "$root/usr/local/go"
    mount --bind -o ro /usr/local/go "$root/usr/local/go"
  fi
  mkdir -p "$CACHE/apt-archives/partial"
  for lend in "$CACHE/apt-archives:/var/cache/apt/archives" "$HOME/.cache/pip:/root/.cache/pip" \
              "$HOME/go/pkg/mod:/root/go/pkg/mod" "$HOME/.cache/go-build:/root/.cache/go-build"; do
    mkdir -p "${lend%%:*}" "$root${lend#*:}"
    mount --bind "${lend%%:*}" "$root${lend#*:}"
  done
  [[ -d /opt/wheels ]] && mkdir -p "$root/opt/wheels" && mount --bind -o ro /opt/wheels "$root/opt/wheels"
  # no apt.conf that deletes downloaded packages (Debian's container images have one): keep the cache warm
  rm -f "$root/etc/apt/apt.conf.d/docker-clean"
  chroot "$root" update-ca-certificates >/dev/null 2>&1
  local env=(HOME=/root LANG=C.UTF-8 TERM=dumb CI=true
             PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/go/bin)
  mapfile -t -O "${#env[@]}" env < <(machine_env)
  chroot "$root" /usr/bin/env -i "${env[@]}" bash -c 'cd /root/voice-device && exec bash scripts/test "$@"' test "$@"
}

# What this kind of machine sets for every program: where its trusted certificates are, pip's and Go's settings
# (registries, time-outs), proxies. Not the session's own variables.
machine_env() {
  env | grep -E '^([A-Z_]*CA_(BUNDLE|CERTS?)[A-Z_]*|SSL_CERT_(FILE|DIR)|PIP_[A-Z_]+|GO(PROXY|SUMDB|NOSUMDB|PRIVATE|FLAGS)|(https?|no)_proxy|(HTTPS?|NO)_PROXY)=' || true
}

case "${1:-}" in
  clean) rm -rf "$CACHE"; exit 0 ;;
  __inside) shift; inside "$@"; exit $? ;;
esac
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot, mounts)"
for t in debootstrap unshare chroot git; do
  command -v "$t" >/dev/null || die "$t is missing (apt: debootstrap util-linux coreutils git)"
done

args=(-q "${FAST[@]}")
case "${1:-}" in
  --full) args=(-q) ;;
  --) shift; args=("$@") ;;
  "") ;;
  *) die "usage: scripts/fresh-root.sh [--full | -- PYTEST-ARGS... | clean]" ;;
esac

started=$(date +%s)
tar="$(build_base)"
work="$(mktemp -d /var/tmp/vd-fresh.XXXXXX)"
cleanup() {
  local pid
  # nothing started inside outlives the run (a daemonized PulseAudio, a test's server)
  for pid in /proc/[0-9]*; do
    [[ "$(readlink "$pid/root" 2>/dev/null)" == "$work/root" ]] && kill -9 "${pid#/proc/}" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/root"
tar -C "$work/root" -xf "$tar"
cp /etc/resolv.conf "$work/root/etc/resolv.conf"
# the machine's trust and pip's configuration, as every machine of this kind has them (a TLS-inspecting egress
# may sign the registries' certificates with its own authority)
if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
  cp -a /usr/local/share/ca-certificates/. "$work/root/usr/local/share/ca-certificates/"
fi
[[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$work/root/etc/pip.conf"
# apt in the root uses this machine's sources, as a fresh machine of this kind would
if compgen -G "/etc/apt/sources.list.d/*" >/dev/null || [[ -s /etc/apt/sources.list ]]; then
  rm -f "$work/root/etc/apt/sources.list"
  cp -a /etc/apt/sources.list.d/. "$work/root/etc/apt/sources.list.d/"
  [[ -s /etc/apt/sources.list ]] && cp /etc/apt/sources.list "$work/root/etc/apt/sources.list"
fi
git clone -q "$ROOT" "$work/root/root/voice-device"
say "HEAD $(git -C "$ROOT" rev-parse --short HEAD) cloned into a fresh $SUITE root; running CI=true scripts/test ${args[*]}"
[[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]] && say "(uncommitted changes are not in the clone)"
rc=0
unshare --mount --fork bash "$0" __inside "$work/root" "${args[@]}" || rc=$?
say "exit $rc after $(( $(date +%s) - started )) s"
exit "$rc"
