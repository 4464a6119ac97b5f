#!/usr/bin/env bash
# Install voice-device as a systemd service on 64-bit Raspberry Pi OS (bookworm); safe to run again (upgrade).
#
#   sudo scripts/install.sh --profile kiosk|smart-speaker|appliance   install or upgrade
#   sudo scripts/install.sh --uninstall                               remove it (the config and secrets stay)
#
# What it does: apt packages (only those missing), the system user `voice-device` in the audio, gpio and spi
# groups (creating missing groups), a venv in /opt/voice-device/venv with voice-device installed from this
# checkout, /etc/voice-device/config.yaml from the profile (0640 root:voice-device; an existing one is kept),
# /etc/voice-device/env for secrets (0600 root), and the systemd unit, installed and enabled.
#
# Options:
#   --profile NAME   the config to start from (needed only when /etc/voice-device/config.yaml does not exist)
#   --uninstall      stop and remove the service, the venv and the user/groups this script created
#   --dry-run        print what would be done, change nothing
#   --prefix DIR     install every file under DIR instead of / (tests); users, groups, apt and systemctl are
#                    printed, not run
#   --wheel FILE     install this built voice-device wheel instead of building the checkout
#   --offline        pip uses no package index (with --wheel: no dependencies are installed either)
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE="" PREFIX="" DRY=0 UNINSTALL=0 WHEEL="" OFFLINE=0
SERVICE_USER=voice-device
GROUPS_NEEDED=(audio gpio spi)
APT_PACKAGES=(python3-venv python3-dev gcc portaudio19-dev libasound2-plugins alsa-utils)

ARGS=("$@")

say() { echo "install: $*" >&2; }
shown() {  # a command line as one would type it
  local a out=""
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then out+="$a "; else out+="$(printf '%q' "$a") "; fi
  done
  echo "${out% }"
}
die() { echo "install: $*" >&2; exit "${2:-1}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) PROFILE="${2:?--profile needs a name}"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) PREFIX="${1#*=}"; shift ;;
    --wheel) WHEEL="${2:?--wheel needs a file}"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --offline) OFFLINE=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" 2 ;;
  esac
done

if [[ -n "$PREFIX" ]]; then
  mkdir -p "$PREFIX"
  PREFIX="$(cd "$PREFIX" && pwd)"
  [[ "$PREFIX" == / ]] && PREFIX=""
fi
OPT="$PREFIX/opt/voice-device"
VENV="$OPT/venv"
MANIFEST="$OPT/install-manifest"
ETC="$PREFIX/etc/voice-device"
CONFIG="$ETC/config.yaml"
ENVFILE="$ETC/env"
UNIT="$PREFIX/etc/systemd/system/voice-device.service"

# run: changes files (skipped by --dry-run). sys: changes the system outside the prefix (skipped by both).
run() {
  if [[ $DRY -eq 1 ]]; then say "would run: $(shown "$@")"; else "$@"; fi
}
sys() {
  if [[ $DRY -eq 1 || -n "$PREFIX" ]]; then say "would run: $(shown "$@")"; else say "running: $(shown "$@")"; "$@"; fi
}
systemd_running() { [[ -z "$PREFIX" && -d /run/systemd/system ]]; }
record() {  # remember what this script created, so that --uninstall removes exactly that
  [[ $DRY -eq 1 ]] && return 0
  mkdir -p "$OPT"
  grep -qxF "$1" "$MANIFEST" 2>/dev/null || echo "$1" >> "$MANIFEST"
}
# Leave the checkout clean: pip builds in place, so it gets a copy of what it needs.
stage_source() {
  local dir
  dir="$(mktemp -d)"
  cp -r "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/device" "$dir/"
  find "$dir" -name __pycache__ -prune -exec rm -rf {} +
  echo "$dir"
}
source_hash() {
  if [[ -n "$WHEEL" ]]; then sha256sum "$WHEEL" | cut -d' ' -f1; return; fi
  (cd "$SRC" && find pyproject.toml device -name '*.py' -o -name pyproject.toml | LC_ALL=C sort \
     | xargs sha256sum) | sha256sum | cut -d' ' -f1
}

check_platform() {
  local arch
  arch="$(uname -m)"
  case "$arch" in
    aarch64|x86_64) ;;
    armv6l|armv7l|armhf|arm*)
      die "this is a 32-bit system ($arch): voice-device needs a 64-bit OS because LiveKit ships its native library for aarch64 and x86_64 only. Install Raspberry Pi OS (64-bit, bookworm) and run this again." ;;
    *) die "unsupported architecture $arch: voice-device runs on aarch64 (64-bit Raspberry Pi OS) or x86_64." ;;
  esac
  if [[ -r /etc/os-release ]]; then
    local codename
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [[ "$codename" == bookworm ]] || say "note: tested on Debian/Raspberry Pi OS bookworm; this is '${codename:-unknown}'"
  fi
  if [[ -z "$PREFIX" && $DRY -eq 0 && $(id -u) -ne 0 ]]; then
    die "run as root: sudo $0 ${ARGS[*]}"
  fi
}

install_apt() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # gpiozero's Pi backend; Raspberry Pi OS packages it (plain Debian does not, and needs no GPIO).
  if ! dpkg-query -W -f='${Status}' python3-lgpio 2>/dev/null | grep -q "install ok installed" \
     && apt-cache show python3-lgpio >/dev/null 2>&1; then
    missing+=(python3-lgpio)
  fi
  if [[ ${#missing[@]} -eq 0 ]]; then say "apt packages present"; return; fi
  sys apt-get update -qq
  sys env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

install_user() {
  local g
  for g in "$SERVICE_USER" "${GROUPS_NEEDED[@]}"; do
    if ! getent group "$g" >/dev/null; then
      sys groupadd --system "$g"
      record "group $g"
    fi
  done
  if getent passwd "$SERVICE_USER" >/dev/null; then
    sys usermod -a -G "$(IFS=,; echo "${GROUPS_NEEDED[*]}")" "$SERVICE_USER"
  else
    sys useradd --system --gid "$SERVICE_USER" --groups "$(IFS=,; echo "${GROUPS_NEEDED[*]}")" \
      --home-dir /var/lib/voice-device --no-create-home --shell /usr/sbin/nologin \
      --comment "voice-device daemon" "$SERVICE_USER"
    record "user $SERVICE_USER"
  fi
}

install_venv() {
  local want stamp="$VENV/.voice-device-source" stage pip_args=()
  want="$(source_hash)"
  if [[ -x "$VENV/bin/voice-device" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    say "venv $VENV is up to date"
    return
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    # System site packages: gpiozero's lgpio backend comes from apt (python3-lgpio) on Raspberry Pi OS.
    run mkdir -p "$OPT"
    run python3 -m venv --system-site-packages "$VENV"
    record "venv $VENV"
  fi
  [[ $OFFLINE -eq 1 ]] && pip_args+=(--no-index)
  if [[ -n "$WHEEL" ]]; then
    [[ $OFFLINE -eq 1 ]] && pip_args+=(--no-deps)
    say "installing $(basename "$WHEEL") into $VENV"
    run "$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall "${pip_args[@]}" "$WHEEL" \
      || die "pip could not install $WHEEL; see its output above"
  else
    stage="$(stage_source)"
    say "installing voice-device from $SRC into $VENV"
    [[ $OFFLINE -eq 1 ]] || run "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    if ! run "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${pip_args[@]}" "$stage"; then
      rm -rf "$stage"
      die "pip could not install voice-device; see its output above (without network, pass --wheel FILE)"
    fi
    rm -rf "$stage"
  fi
  run cp "$SRC/README.md" "$OPT/README.md"
  if [[ $DRY -eq 0 ]]; then echo "$want" > "$stamp"; fi
}

install_config() {
  run mkdir -p "$ETC"
  run chmod 0750 "$ETC"
  sys chown "root:$SERVICE_USER" "$ETC"
  if [[ -e "$CONFIG" ]]; then
    say "keeping the existing $CONFIG"
  else
    [[ -n "$PROFILE" ]] || die "no $CONFIG yet: choose a profile with --profile kiosk|smart-speaker|appliance" 2
    case "$PROFILE" in
      kiosk|smart-speaker|appliance) ;;
      *) die "unknown profile '$PROFILE': choose kiosk, smart-speaker or appliance" 2 ;;
    esac
    say "writing $CONFIG from the $PROFILE profile"
    run install -m 0640 "$SRC/config/$PROFILE.yaml" "$CONFIG"
  fi
  # The loader refuses a config others can read; the service reads it through its group.
  run chmod 0640 "$CONFIG"
  sys chown "root:$SERVICE_USER" "$CONFIG"
  if [[ ! -e "$ENVFILE" ]]; then
    say "writing $ENVFILE for secrets (read by systemd as root, 0600)"
    if [[ $DRY -eq 1 ]]; then
      say "would write $ENVFILE"
    else
      (umask 077 && cat > "$ENVFILE" <<'EOF'
# Secrets for voice-device, loaded by systemd (EnvironmentFile=) and referenced from config.yaml as ${NAME}.
# VOICE_DEVICE_TOKEN_ENDPOINT=https://tokens.example.com/voice-device
# VOICE_DEVICE_CREDENTIAL=
# VOICE_DEVICE_AGENT=voice-agent
# LIVEKIT_URL=wss://example.livekit.cloud
EOF
      )
    fi
  fi
  run chmod 0600 "$ENVFILE"
}

install_unit() {
  local changed=0
  if ! cmp -s "$SRC/systemd/voice-device.service" "$UNIT"; then
    say "installing $UNIT"
    run mkdir -p "$(dirname "$UNIT")"
    run install -m 0644 "$SRC/systemd/voice-device.service" "$UNIT"
    changed=1
  else
    say "$UNIT is up to date"
  fi
  if systemd_running; then
    [[ $changed -eq 1 ]] && sys systemctl daemon-reload
    sys systemctl enable voice-device.service
    sys systemctl try-restart voice-device.service
  else
    say "systemd is not running here; on the device run: systemctl daemon-reload && systemctl enable voice-device"
    [[ -n "$PREFIX" || $DRY -eq 1 ]] && say "would run: systemctl enable voice-device.service"
  fi
}

uninstall() {
  local line
  if systemd_running; then
    sys systemctl disable --now voice-device.service || true
  else
    say "would run: systemctl disable --now voice-device.service"
  fi
  if [[ -e "$UNIT" ]]; then run rm -f "$UNIT"; fi
  if systemd_running; then sys systemctl daemon-reload; fi
  local created=()
  if [[ -f "$MANIFEST" ]]; then mapfile -t created < "$MANIFEST"; fi
  for line in "${created[@]}"; do
    [[ "$line" == "user $SERVICE_USER" ]] && sys userdel "$SERVICE_USER"
  done
  for line in "${created[@]}"; do
    if [[ "$line" == group\ * ]] && getent group "${line#group }" >/dev/null; then sys groupdel "${line#group }"; fi
  done
  if [[ -d "$OPT" ]]; then run rm -rf "$OPT"; fi
  say "removed voice-device; kept $CONFIG and $ENVFILE (delete them by hand if you no longer need them)"
}

check_platform
if [[ $UNINSTALL -eq 1 ]]; then
  uninstall
  exit 0
fi
[[ -z "$WHEEL" || -f "$WHEEL" ]] || die "no such wheel: $WHEEL" 2
install_apt
install_user
install_venv
install_config
install_unit
say "done. Put secrets in $ENVFILE, check with: $VENV/bin/voice-device check --config $CONFIG"
say "then: systemctl start voice-device && voice-device status"
