# Sourced by scripts/vm-image.sh and scripts/fresh-root.sh: a Debian root file system made by debootstrap.

# debootstrap_into DIR SUITE MIRROR PACKAGE...: Debian's minbase plus PACKAGE... into DIR, logged to DIR.log;
# on failure the log's last lines go to stderr and it returns 1 (the caller cleans up and says so).
# With DEBOOTSTRAP_ARCH naming another architecture than this machine's (arm64 on x86_64), the first stage unpacks
# and the second configures the packages in a chroot, its binaries run by qemu-user through binfmt_misc; a function
# named by DEBOOTSTRAP_BETWEEN runs on DIR between the two (files the second stage's package scripts read).
debootstrap_into() {
  local dir="$1" suite="$2" mirror="$3" arch="${DEBOOTSTRAP_ARCH:-$(dpkg --print-architecture)}"
  shift 3
  local include
  include="$(IFS=,; echo "$*")"
  if [[ "$arch" == "$(dpkg --print-architecture)" ]]; then
    debootstrap --variant=minbase --include="$include" "$suite" "$dir" "$mirror" > "$dir.log" 2>&1 \
      || { tail -20 "$dir.log" >&2; return 1; }
    return
  fi
  binfmt_ready "$arch" || return 1
  debootstrap --foreign --arch="$arch" --variant=minbase --include="$include" "$suite" "$dir" "$mirror" \
      > "$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; return 1; }
  "${DEBOOTSTRAP_BETWEEN:-:}" "$dir"
  chroot "$dir" /debootstrap/debootstrap --second-stage >> "$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; return 1; }
}

# binfmt_ready ARCH: this machine's kernel runs ARCH's binaries (qemu-user-static's interpreter, registered with the
# F flag so that it works inside a chroot). Mounts binfmt_misc if it is not, registers the interpreter if it is
# not; leaves both in place (other users of the machine may rely on them).
binfmt_ready() {
  local name
  case "$1" in arm64) name=aarch64 ;; *) echo "no binfmt interpreter known for $1" >&2; return 1 ;; esac
  local conf="/usr/lib/binfmt.d/qemu-$name.conf" misc=/proc/sys/fs/binfmt_misc
  [[ -f "$conf" ]] || { echo "$conf is missing: apt install qemu-user-static (scripts/setup.sh does)" >&2; return 1; }
  if [[ ! -f "$misc/register" ]]; then
    mount -t binfmt_misc binfmt_misc "$misc" || { echo "cannot mount binfmt_misc on $misc" >&2; return 1; }
  fi
  [[ -f "$misc/qemu-$name" ]] || grep -v '^#' "$conf" > "$misc/register" \
    || { echo "cannot register qemu-$name with binfmt_misc" >&2; return 1; }
  grep -q '^enabled' "$misc/qemu-$name" || { echo "binfmt_misc's qemu-$name is disabled" >&2; return 1; }
}
