#!/usr/bin/env bash
# Build (once, cached) the Debian 12 disk the VM tests boot: a Pi-shaped appliance with voice-device installed
# by its own installer, systemd as PID 1 and plain ALSA on the snd-aloop loopback card.
#
#   scripts/vm-image.sh [--arch amd64|arm64] build   build what is missing, print the image's directory
#   scripts/vm-image.sh [--arch amd64|arm64] path    print that directory if it is built (exit 1 otherwise)
#   scripts/vm-image.sh clean                        remove the cache (every architecture's)
#
# --arch (default amd64, or $VOICE_DEVICE_VM_ARCH): arm64 is the Raspberry Pi's architecture (64-bit Raspberry Pi
# OS is Debian 12 arm64 underneath). Its root is made by debootstrap's two stages, the second run in a chroot through
# binfmt_misc and qemu-user-static, and its installer runs there too, as slowly as emulation goes (PyAudio compiles
# from source on arm64 as on a Pi: no wheel exists); its wheelhouse holds the aarch64 wheels pip downloads for
# Python 3.11 (and PyAudio's source). Images are cached per architecture.
#
# Two stages, each cached under $VOICE_DEVICE_VM_CACHE (default .cache/vm in the checkout, gitignored):
#   rootfs-KEY.tar   debootstrap --variant=minbase bookworm with systemd, udev, a kernel, python3 (~3.5 min);
#                    KEY hashes the architecture and this script's package list.
#   image-ARCH-KEY/  the rootfs provisioned in a chroot at native speed: the test agent, the loopback card, a
#                    static address, then `scripts/install.sh --profile appliance` for real (apt from Debian,
#                    the system user, the venv from a wheelhouse built here, the config, the unit, enabled);
#                    then disk.img (ext4), vmlinuz and initrd.img. KEY hashes the checkout's installed parts.
#                    amd64 also gets the GPIO test equipment (tests/vm/guest/gpio-equipment.sh: a gpio-sim kernel
#                    module built from Debian's linux-source, and lgpio built from PyPI's sdist, fetched here once).
# The VM itself never reaches a network: everything it needs is on its disk.
# Needs root, debootstrap, mkfs.ext4 (e2fsprogs) and the Debian archive (apt sources of this machine).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ARCH="${VOICE_DEVICE_VM_ARCH:-amd64}"
if [[ "${1:-}" == --arch ]]; then ARCH="${2:?--arch needs amd64 or arm64}"; shift 2; fi
case "$ARCH" in amd64|arm64) ;; *) echo "vm-image: --arch is amd64 or arm64, not $ARCH" >&2; exit 2 ;; esac
CACHE="${VOICE_DEVICE_VM_CACHE:-$ROOT/.cache/vm}"
PY="${VOICE_DEVICE_VENV:-$ROOT/.venv}/bin/python"
SUITE=bookworm
MIRROR="${VOICE_DEVICE_VM_MIRROR:-http://deb.debian.org/debian}"
# What a Raspberry Pi OS Lite has that matters here (systemd, udev, kmod, python3), plus a kernel and initrd
# for qemu, dbus for systemd-analyze, procps and psmisc for the tests' process checks.
BASE_PACKAGES=(systemd systemd-sysv udev kmod dbus "linux-image-$ARCH" initramfs-tools iproute2 python3 procps
  psmisc)
DISK_MB=4096
# gpiozero's pin driver on a Pi (python3-lgpio on Raspberry Pi OS), built in the image from PyPI's source
LGPIO_SDIST=lgpio-0.2.2.0.tar.gz
LGPIO_SHA256=11372e653b200f76a0b3ef8a23a0735c85ec678a9f8550b9893151ed0f863fff

# shellcheck source=lib/rootfs.sh
source "$ROOT/scripts/lib/rootfs.sh"

say() { echo "vm-image: $*" >&2; }
die() { echo "vm-image: $*" >&2; exit 1; }

base_key() {
  { echo "$SUITE $ARCH ${BASE_PACKAGES[*]}"; sed -n '/^provision_base()/,/^}/p;/^initrd_for_qemu()/,/^}/p' "$0"; } \
    | sha256sum | cut -c1-16
}

image_key() {
  (cd "$ROOT" && { echo "base $(base_key)"; cat "$0";
    echo "$ARCH"; find device config systemd tests/vm/guest scripts/install.sh scripts/lib pyproject.toml -type f \
      ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum; }) | sha256sum | cut -c1-16
}

need() {
  [[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot, mkfs)"
  local t
  for t in debootstrap mkfs.ext4 chroot; do
    command -v "$t" >/dev/null || die "$t is missing: run scripts/setup.sh --vm (apt: debootstrap e2fsprogs)"
  done
}

# ---- stage 1: the Debian root file system --------------------------------------------------------------------

provision_base() {  # $1: rootfs dir; what every image shares (part of the base key)
  local dir="$1"
  echo "vd-appliance" > "$dir/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 vd-appliance\n' > "$dir/etc/hosts"
  printf '/dev/vda / ext4 rw,relatime 0 1\n' > "$dir/etc/fstab"
  chroot "$dir" passwd -d root >/dev/null
  # No getty fights the test agent on the console; the console still shows the boot.
  chroot "$dir" systemctl mask serial-getty@ttyS0.service serial-getty@ttyAMA0.service getty@tty1.service \
    >/dev/null 2>&1
  # Apt of the image talks to the same archive this machine does (the installer runs it inside the chroot).
  printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$dir/etc/apt/sources.list"
  rm -f "$dir"/var/cache/apt/archives/*.deb
}

initrd_for_qemu() {  # $1: rootfs dir, before the packages are configured (a foreign architecture only)
  # The initrd holds just what mounts qemu's virtio disk. initramfs-tools' default (MODULES=most) runs modinfo on
  # every module of the kernel and compresses them all: under user-mode emulation that took 6 minutes, twice (once
  # for the kernel, once more for initramfs-tools itself). MODULES=dep cannot see the VM's devices from a chroot.
  local dir="$1"
  mkdir -p "$dir/etc/initramfs-tools/conf.d" "$dir/etc/initramfs-tools/hooks"
  echo "MODULES=list" > "$dir/etc/initramfs-tools/conf.d/vd-qemu"
  cat > "$dir/etc/initramfs-tools/hooks/vd-qemu" <<'HOOK'
#!/bin/sh
# voice-device's VM image: the drivers that mount the root file system on qemu's virt machine
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
for m in virtio_pci virtio_mmio virtio_blk ext4; do force_load "$m"; done
HOOK
  chmod 0755 "$dir/etc/initramfs-tools/hooks/vd-qemu"
}

build_base() {
  local tar="$CACHE/rootfs-$(base_key).tar" work
  if [[ -f "$tar" ]]; then echo "$tar"; return; fi
  work="$(mktemp -d "$CACHE/.rootfs.XXXXXX")"
  say "debootstrap $SUITE $ARCH (minbase + ${BASE_PACKAGES[*]}): a few minutes, once"
  DEBOOTSTRAP_ARCH="$ARCH" DEBOOTSTRAP_BETWEEN=initrd_for_qemu \
    debootstrap_into "$work/root" "$SUITE" "$MIRROR" "${BASE_PACKAGES[@]}" \
    || { rm -rf "$work"; die "debootstrap failed (log above)"; }
  provision_base "$work/root"
  tar -C "$work/root" --numeric-owner -cf "$tar.part" .
  mv "$tar.part" "$tar"
  rm -rf "$work"
  say "cached $tar"
  echo "$tar"
}

# ---- the wheelhouse: voice-device's dependencies built here, so pip in the image needs no network ---------------

build_wheelhouse() {
  local deps dir work
  deps="$(python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
    "$ROOT/pyproject.toml")"
  dir="$CACHE/wheelhouse-$ARCH-$( { echo "$ARCH"; echo "$deps"; } | sha256sum | cut -c1-16)"
  if [[ -f "$dir/.complete" ]]; then echo "$dir"; return; fi
  [[ -x "$PY" ]] || die "no $PY: run scripts/setup.sh first"
  work="$(mktemp -d "$CACHE/.wheels.XXXXXX")"
  if [[ "$ARCH" == amd64 ]]; then
    say "building the wheelhouse (voice-device's dependencies; PyAudio is compiled here)"
    pip_into "$work" "pip wheel" "$PY" -m pip wheel -q --disable-pip-version-check -w "$work" "$ROOT" setuptools wheel
    rm -f "$work"/voice_device-*.whl  # the installer builds voice-device from the checkout
  else
    say "downloading the aarch64 wheelhouse (Python 3.11 wheels; PyAudio as source: the image's pip compiles it)"
    pip_into "$work" "pip download for $ARCH" download_foreign_wheels "$work" "$deps"
  fi
  touch "$work/.complete"
  rm -rf "$dir"
  mv "$work" "$dir"
  echo "$dir"
}

# pip_into WORK WHAT COMMAND...: run a pip COMMAND that fills the fresh directory WORK, its output kept aside; when it
# fails, the output's tail goes to stderr, WORK goes, and the build stops saying WHAT failed.
pip_into() {
  local work="$1" what="$2"
  shift 2
  if ! "$@" > "$work/.pip.log" 2>&1; then
    tail -20 "$work/.pip.log" >&2
    rm -rf "$work"
    die "$what failed (log above)"
  fi
  rm -f "$work/.pip.log"
}

# download_foreign_wheels DIR DEPS: the aarch64 wheels of DEPS (one requirement a line) and their dependencies for
# CPython 3.11 on glibc 2.36 (bookworm), as pip on a Pi would choose them: pip takes a manylinux tag only when it
# is listed (pymicro-wakeword ships manylinux_2_35 alone), so every glibc up to the image's is. PyAudio has no
# wheel on any Linux: its source goes in, with the build tools the image's pip needs to compile it offline.
download_foreign_wheels() {
  local dir="$1" deps="$2" platforms=() binary=() glibc
  for glibc in $(seq 17 36); do platforms+=(--platform "manylinux_2_${glibc}_aarch64"); done
  platforms+=(--platform manylinux2014_aarch64 --platform linux_aarch64)
  mapfile -t binary < <(grep -vi '^pyaudio' <<< "$deps")
  "$PY" -m pip download -q --disable-pip-version-check -d "$dir" --only-binary=:all: --python-version 3.11 \
    --implementation cp --abi cp311 "${platforms[@]}" "${binary[@]}" setuptools wheel &&
  "$PY" -m pip download -q --disable-pip-version-check -d "$dir" --no-binary=:all: --no-deps \
    "$(grep -i '^pyaudio' <<< "$deps")"
}

fetch_lgpio() {  # the lgpio sdist the GPIO test equipment is built from, downloaded once and checked
  local file="$CACHE/$LGPIO_SDIST" work
  if [[ -f "$file" ]]; then echo "$file"; return; fi
  [[ -x "$PY" ]] || die "no $PY: run scripts/setup.sh first"
  work="$(mktemp -d "$CACHE/.lgpio.XXXXXX")"
  pip_into "$work" "pip download lgpio" "$PY" -m pip download -q --disable-pip-version-check --no-deps \
    --no-binary=:all: -d "$work" "lgpio==$(sed 's/^lgpio-//; s/[.]tar[.]gz$//' <<< "$LGPIO_SDIST")"
  if [[ "$(sha256sum "$work/$LGPIO_SDIST" 2>/dev/null | cut -d' ' -f1)" != "$LGPIO_SHA256" ]]; then
    rm -rf "$work"
    die "the downloaded $LGPIO_SDIST is not the one this script pins (sha256 $LGPIO_SHA256)"
  fi
  mv "$work/$LGPIO_SDIST" "$file"
  rm -rf "$work"
  echo "$file"
}

# ---- stage 2: the appliance, installed by the project's installer inside a chroot ------------------------------

stage_checkout() {  # $1: destination; the files git tracks (or would), as a fresh clone has them
  local dest="$1"
  mkdir -p "$dest"
  (cd "$ROOT" && { git ls-files -co --exclude-standard 2>/dev/null || find . -type f ! -path './.*'; } \
    | grep -v -e '^\.cache/' -e '^\.venv/' | tar -cf - -T - 2>/dev/null) | tar -C "$dest" -xf -
}

chroot_mounts() {  # $1 root; mounted for apt, pip and useradd inside; umounted by the caller's trap
  mount -t proc proc "$1/proc"
  mount -t sysfs sys "$1/sys"
  mount --bind /dev "$1/dev"
  mount -t devpts devpts "$1/dev/pts"
}

chroot_umount() {
  local m
  for m in dev/pts dev sys proc; do umount -l "$1/$m" 2>/dev/null || true; done
}

provision_image() {  # $1 rootfs, $2 wheelhouse, $3 the lgpio sdist (amd64: the GPIO test equipment)
  local dir="$1" guest="$ROOT/tests/vm/guest"
  # The test equipment: the host's command channel, the VM's address in the test's namespace.
  install -D -m 0644 "$guest/agent.py" "$dir/usr/local/lib/vd-test/agent.py"
  install -D -m 0644 "$guest/vd-test-agent.service" "$dir/etc/systemd/system/vd-test-agent.service"
  install -D -m 0644 "$guest/10-test-net.network" "$dir/etc/systemd/network/10-test-net.network"
  install -D -m 0644 "$guest/vm-mock-gpio.conf" "$dir/etc/systemd/system/voice-device.service.d/vm-mock-gpio.conf"
  install -D -m 0644 "$guest/vm-test.conf" "$dir/etc/systemd/system/voice-device.service.d/vm-test.conf"
  chroot "$dir" systemctl enable vd-test-agent.service systemd-networkd.service >/dev/null 2>&1
  chroot "$dir" systemctl set-default multi-user.target >/dev/null 2>&1  # as Raspberry Pi OS Lite boots
  # The sound card: the ALSA loopback, the machine's only one (qemu gets no audio device).
  echo snd-aloop > "$dir/etc/modules-load.d/snd-aloop.conf"
  # One substream per device, like a real card: a second opener of hw:Loopback,0 finds it busy.
  echo "options snd-aloop index=0 id=Loopback pcm_substreams=1" > "$dir/etc/modprobe.d/snd-aloop.conf"
  # Journald keeps the log across the tests' reboot.
  mkdir -p "$dir/var/log/journal"
  # The project, as a user would have it: a checkout, and its installer run for real.
  stage_checkout "$dir/root/voice-device"
  cp -r "$2" "$dir/root/wheelhouse"
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  chroot_mounts "$dir"
  say "installing voice-device in the image: scripts/install.sh --profile appliance (apt, user, venv, unit)"
  if ! chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
      bash /root/voice-device/scripts/install.sh --profile appliance --alsa-card Loopback \
      --find-links /root/wheelhouse > "$dir/root/install.log" 2>&1; then
    tail -30 "$dir/root/install.log" >&2
    die "the installer failed in the image (log above)"
  fi
  [[ -z "${3:-}" ]] || gpio_equipment "$dir" "$3"
  # The owner's first step after the installer ("1. edit /etc/voice-device/env"): the daemon refuses to start on the
  # profile's placeholders, so the first boot gets a token endpoint of its own (the suite's side of the tap; the
  # appliance asks it for nothing before a press, and the suite's set-up replaces this file with its real one).
  printf '%s\n' "VOICE_DEVICE_TOKEN_ENDPOINT=https://10.232.0.1/voice-device" "VOICE_DEVICE_CREDENTIAL=first-boot" \
    >> "$dir/etc/voice-device/env"
  chroot "$dir" apt-get clean
  chroot_umount "$dir"
  rm -rf "$dir"/var/lib/apt/lists/* "$dir/etc/resolv.conf"
  : > "$dir/etc/machine-id"  # a fresh identity at each boot of the snapshot
}

gpio_equipment() {  # $1 rootfs (mounted for the chroot), $2 the lgpio sdist
  local dir="$1" started=$SECONDS
  say "building the GPIO test equipment in the image: gpio-sim for its kernel, lgpio"
  cp "$2" "$dir/root/$LGPIO_SDIST"
  if ! chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
      bash /root/voice-device/tests/vm/guest/gpio-equipment.sh "/root/$LGPIO_SDIST" /root/wheelhouse \
      > "$dir/root/gpio-equipment.log" 2>&1; then
    tail -30 "$dir/root/gpio-equipment.log" >&2
    die "the GPIO test equipment failed to build in the image (log above)"
  fi
  rm -f "$dir/root/$LGPIO_SDIST"
  say "GPIO test equipment built in $((SECONDS - started)) s"
}

build_image() {
  local base wheels key out work lgpio=""
  base="$(build_base)"
  wheels="$(build_wheelhouse)"
  key="$(image_key)"
  out="$CACHE/image-$ARCH-$key"
  if [[ -f "$out/disk.img" ]]; then echo "$out"; return; fi
  # The GPIO test equipment on amd64 only so far: on arm64 its builds would run under user-mode emulation.
  [[ "$ARCH" != amd64 ]] || lgpio="$(fetch_lgpio)"
  work="$(mktemp -d "$CACHE/.image.XXXXXX")"
  trap 'chroot_umount "$work/root"; rm -rf "$work"' EXIT
  mkdir "$work/root"
  tar -C "$work/root" -xf "$base"
  provision_image "$work/root" "$wheels" "$lgpio"
  cp "$work/root/root/install.log" "$work/install.log"
  [[ ! -f "$work/root/root/gpio-equipment.log" ]] || cp "$work/root/root/gpio-equipment.log" "$work/"
  cp -L "$work/root/vmlinuz" "$work/vmlinuz"
  cp -L "$work/root/initrd.img" "$work/initrd.img"
  say "making the disk (ext4, ${DISK_MB} MB sparse)"
  mkfs.ext4 -q -F -L vd-root -d "$work/root" "$work/disk.img" "${DISK_MB}M"
  rm -rf "$work/root"
  # One image an architecture is kept: older ones go (a VM still running on one keeps its open disk).
  rm -rf "$CACHE"/image-"$ARCH"-*
  mv "$work" "$out"
  trap - EXIT
  say "image ready: $out"
  echo "$out"
}

main() {
  local cmd="${1:-build}"
  case "$cmd" in
    base) need; mkdir -p "$CACHE"; build_base ;;
    build) need; mkdir -p "$CACHE"; build_image ;;
    path) local out="$CACHE/image-$ARCH-$(image_key)"; [[ -f "$out/disk.img" ]] || exit 1; echo "$out" ;;
    clean) rm -rf "$CACHE" ;;
    *) die "usage: $0 build|path|clean" ;;
  esac
}

main "$@"; exit $?  # (one line: bash reads a script as it runs it)
