# Sourced by scripts/vm-image.sh and scripts/fresh-root.sh: a Debian root file system made by debootstrap.

# debootstrap_into DIR SUITE MIRROR PACKAGE...: Debian's minbase plus PACKAGE... into DIR, logged to DIR.log;
# on failure the log's last lines go to stderr and it returns 1 (the caller cleans up and says so).
debootstrap_into() {
  local dir="$1" suite="$2" mirror="$3"
  shift 3
  if ! debootstrap --variant=minbase --include="$(IFS=,; echo "$*")" "$suite" "$dir" "$mirror" \
      > "$dir.log" 2>&1; then
    tail -20 "$dir.log" >&2
    return 1
  fi
}
