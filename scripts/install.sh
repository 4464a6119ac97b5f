#!/usr/bin/env bash
# Install voice-device as a systemd service on 64-bit Raspberry Pi OS (bookworm); safe to run again (upgrade).
#
#   sudo scripts/install.sh --profile kiosk|smart-speaker|appliance   install or upgrade
#   sudo scripts/install.sh --uninstall [--purge]                     remove it (--purge: the config and secrets too)
#   voice-device-tokens enrol ... | ssh pi sudo scripts/install.sh --profile kiosk --env-file -
#                                   the same, unattended, with the device's credential from its enrolment
#
# What it does: apt packages (only those missing), the system user `voice-device` in the audio, gpio and spi
# groups (creating missing groups), a venv in /opt/voice-device/venv with voice-device installed from this
# checkout and /usr/local/bin/voice-device pointing into it, /etc/voice-device/config.yaml from the profile
# (0640 root:voice-device; an existing one is kept), /etc/voice-device/env for secrets (0600 root), on plain
# ALSA (no PulseAudio/PipeWire) a shared default sound device (dsnoop/dmix, so `arecord` works beside the daemon),
# where no udev rule gives the GPIO chips (and SPI devices) to the gpio (and spi) group, one that does (Raspberry Pi
# OS has one; plain Debian leaves /dev/gpiochip* to root, and the daemon could not open its button and LEDs), and
# the systemd unit, installed and enabled (in a chroot or image build: enabled for the next boot). The
# service is restarted only when its venv or unit changed.
#
# Options:
#   --profile NAME   the config to start from (needed only when /etc/voice-device/config.yaml does not exist)
#   --uninstall      stop and remove the service, the venv, the ALSA file, the udev rule, the state directory and
#                    the user/groups this script created; the config and secrets stay (owned by root) unless --purge
#   --purge          with --uninstall: remove /etc/voice-device (config and secrets) too
#   --alsa-card CARD the sound card to share on plain ALSA (its id from /proc/asound/cards, e.g. seeed2micvoicec,
#                    or its number); default: the only card with a microphone, if there is exactly one
#   --dry-run        print what would be done, change nothing
#   --prefix DIR     install every file under DIR instead of / (tests); users, groups, apt and systemctl are
#                    printed, not run
#   --wheel FILE     install this built voice-device wheel instead of building the checkout
#   --offline        pip uses no package index (with --wheel: no dependencies are installed either)
#   --find-links DIR pip takes voice-device's dependencies (and build tools) from DIR, a wheelhouse, and no index
#   --env-file FILE  merge FILE's KEY=VALUE lines (`-`: standard input), e.g. the lines `voice-device-tokens enrol`
#                    prints, into /etc/voice-device/env (0600 root): a key already there is replaced in place, the
#                    other lines are kept, nothing is rewritten when nothing changes (Ansible-friendly: run it
#                    again at will); values are never printed. Blank and # lines are skipped; any other line
#                    that is not KEY=VALUE stops the installer before it changes anything
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE="" PREFIX="" DRY=0 UNINSTALL=0 PURGE=0 WHEEL="" OFFLINE=0 FIND_LINKS="" ALSA_CARD="" ENV_INPUT=""
ENV_LINES=()  # the KEY=VALUE lines of --env-file, read and checked before anything changes
SERVICE_USER=voice-device
GROUPS_NEEDED=(audio gpio spi)
APT_PACKAGES=(python3-venv python3-dev gcc portaudio19-dev libasound2-plugins alsa-utils procps)

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
# shellcheck source=lib/platform.sh
source "$SRC/scripts/lib/platform.sh"

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
    --purge) PURGE=1; shift ;;
    --find-links) FIND_LINKS="${2:?--find-links needs a directory}"; OFFLINE=1; shift 2 ;;
    --find-links=*) FIND_LINKS="${1#*=}"; OFFLINE=1; shift ;;
    --alsa-card) ALSA_CARD="${2:?--alsa-card needs a card id or number}"; shift 2 ;;
    --alsa-card=*) ALSA_CARD="${1#*=}"; shift ;;
    --env-file) ENV_INPUT="${2:?--env-file needs a file, or - for standard input}"; shift 2 ;;
    --env-file=*) ENV_INPUT="${1#*=}"; shift ;;
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
LINK="$PREFIX/usr/local/bin/voice-device"
ALSA_CONF="$PREFIX/etc/alsa/conf.d/60-voice-device.conf"
UDEV_RULE="$PREFIX/etc/udev/rules.d/60-voice-device.rules"
STATE="$PREFIX/var/lib/voice-device"
CHANGED=0  # the venv or the unit changed: a running service is restarted at the end

# run: changes files (skipped by --dry-run). sys: changes the system outside the prefix (skipped by both).
run() {
  if [[ $DRY -eq 1 ]]; then say "would run: $(shown "$@")"; else "$@"; fi
}
sys() {
  if [[ $DRY -eq 1 || -n "$PREFIX" ]]; then say "would run: $(shown "$@")"; else say "running: $(shown "$@")"; "$@"; fi
}
systemd_running() { [[ -z "$PREFIX" && -d /run/systemd/system ]]; }
# An image being built (a chroot, pi-gen): systemctl enables units offline, for the next boot.
systemd_offline() { [[ -z "$PREFIX" && ! -d /run/systemd/system ]] && command -v systemctl >/dev/null; }
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
  local refusal
  refusal="$(userland_refusal)"
  [[ -z "$refusal" ]] || die "$refusal"
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
  [[ -n "$FIND_LINKS" ]] && pip_args+=(--find-links "$FIND_LINKS")
  if [[ -n "$WHEEL" ]]; then
    [[ $OFFLINE -eq 1 && -z "$FIND_LINKS" ]] && pip_args+=(--no-deps)
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
  CHANGED=1
}

install_link() {  # the command on PATH, for `voice-device status` and `voice-device check`
  if [[ -L "$LINK" && "$(readlink "$LINK")" == /opt/voice-device/venv/bin/voice-device ]]; then return; fi
  if [[ -e "$LINK" || -L "$LINK" ]]; then say "note: $LINK exists and is not ours; leaving it"; return; fi
  run mkdir -p "$(dirname "$LINK")"
  run ln -s /opt/voice-device/venv/bin/voice-device "$LINK"
  record "link ${LINK#"$PREFIX"}"  # without the prefix: a copied tree uninstalls its own
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
  merge_env
}

read_env_input() {  # --env-file's lines into ENV_LINES; a line that is not KEY=VALUE is refused (by number only)
  local text line n=0
  if [[ "$ENV_INPUT" == - ]]; then
    text="$(cat)"
  else
    [[ -f "$ENV_INPUT" && -r "$ENV_INPUT" ]] || die "--env-file: cannot read $ENV_INPUT" 2
    text="$(cat -- "$ENV_INPUT")"
  fi
  while IFS= read -r line || [[ -n "$line" ]]; do
    n=$((n + 1))
    line="${line%$'\r'}"
    [[ -z "${line//[[:space:]]/}" || "$line" =~ ^[[:space:]]*# ]] && continue
    [[ "$line" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] \
      || die "--env-file: line $n is not KEY=VALUE (a name of letters, digits and _, then =, then the value)" 2
    ENV_LINES+=("$line")
  done <<< "$text"
  [[ ${#ENV_LINES[@]} -gt 0 ]] || die "--env-file: no KEY=VALUE line in ${ENV_INPUT/#-/standard input}" 2
}

merge_env() {  # ENV_LINES into $ENVFILE: the same keys replaced where they stand, the rest kept, written atomically
  [[ ${#ENV_LINES[@]} -gt 0 ]] || return 0
  local -A value=() seen=()
  local order=() line key out="" tmp
  for line in "${ENV_LINES[@]}"; do
    key="${line%%=*}"
    [[ -v "value[$key]" ]] || order+=("$key")
    value[$key]="$line"
  done
  if [[ -f "$ENVFILE" ]]; then
    while IFS= read -r line || [[ -n "$line" ]]; do
      key=""
      [[ "$line" =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)= ]] && key="${BASH_REMATCH[2]}"
      if [[ -n "$key" && -v "value[$key]" ]]; then
        [[ -v "seen[$key]" ]] || out+="${value[$key]}"$'\n'
        seen[$key]=1
      else
        out+="$line"$'\n'
      fi
    done < "$ENVFILE"
  fi
  for key in "${order[@]}"; do
    [[ -v "seen[$key]" ]] || out+="${value[$key]}"$'\n'
  done
  if [[ -f "$ENVFILE" ]] && cmp -s "$ENVFILE" <(printf '%s' "$out"); then
    say "$ENVFILE already holds ${order[*]} as given"
    return
  fi
  say "setting ${order[*]} in $ENVFILE (values not shown)"
  if [[ $DRY -eq 1 ]]; then say "would write $ENVFILE"; return; fi
  tmp="$(mktemp "$ETC/.env.XXXXXX")"  # 0600, beside the file: the rename is atomic
  printf '%s' "$out" > "$tmp"
  mv -f "$tmp" "$ENVFILE"
  CHANGED=1  # the service reads the env file when it starts: restart it
}

sound_server() {  # PulseAudio or PipeWire routes ALSA's default through itself: leave ALSA to it
  local f
  for f in "$PREFIX"/etc/alsa/conf.d/99-pulse*.conf "$PREFIX"/etc/alsa/conf.d/*pipewire*.conf; do
    [[ -e "$f" ]] && { echo "$f"; return 0; }
  done
  return 1
}

alsa_card() {  # --alsa-card, else the only card with a capture device (from /proc/asound/pcm)
  if [[ -n "$ALSA_CARD" ]]; then echo "$ALSA_CARD"; return; fi
  local cards
  [[ -r /proc/asound/pcm ]] || return 1
  cards="$(grep -E ': capture [0-9]+' /proc/asound/pcm | cut -d- -f1 | sort -u)"
  [[ -n "$cards" && $(wc -l <<< "$cards") -eq 1 ]] || return 1
  cat "/proc/asound/card$((10#$cards))/id" 2>/dev/null || echo "$((10#$cards))"
}

alsa_channels() {  # the fewest channels the card's capture device takes (2-mic HATs: 2); 2 when it cannot be asked
  local least
  least="$(timeout 5 arecord -D "$1" --dump-hw-params -d 1 -f S16_LE /dev/null 2>&1 \
    | sed -n 's/^CHANNELS: *\[\{0,1\}\([0-9][0-9]*\).*/\1/p' | head -1)"
  echo "${least:-2}"
}

alsa_text() {  # $1 card id or number, $2 the card's first device as ALSA names it, $3 capture channels
  cat <<EOF
# Written by voice-device's installer (scripts/install.sh --alsa-card $1); --uninstall removes it.
# Plain ALSA lets one process at a time open a card. This makes ALSA's default device shared on card $1: the
# microphone through dsnoop and the speaker through dmix (any user of the audio group), so \`arecord\` or
# \`aplay\` work while voice-device runs. The card's mixer is the default control (\`amixer\`, volume).
pcm.!default {
  type asym
  capture.pcm "voice_device_mic"
  playback.pcm "voice_device_speaker"
}
ctl.!default {
  type hw
  card "$1"
}
pcm.voice_device_mic {
  # dsnoop's shared memory sits at ipc_key + 2, dmix's at ipc_key and + 1: keys far apart (adjacent ones made
  # the speaker fail with "unable to initialize sum ring buffer" while the mic was open)
  type plug
  slave.pcm {
    type dsnoop
    ipc_key 3077110
    ipc_key_add_uid false
    ipc_gid audio
    ipc_perm 0660
    slave { pcm "$2" channels $3 rate 48000 format S16_LE }
  }
  hint.description "voice-device: the shared microphone"
}
pcm.voice_device_speaker {
  type plug
  slave.pcm {
    type dmix
    ipc_key 3077130
    ipc_key_add_uid false
    ipc_gid audio
    ipc_perm 0660
    slave { pcm "$2" rate 48000 format S16_LE }
  }
  hint.description "voice-device: the shared speaker"
}
EOF
}

write_ours() {  # $1 file, $2 its text, $3 its kind in the manifest, $4 what it does (said); fails when not written
  local file="$1" text="$2"
  if [[ -f "$file" && "$(cat "$file")" == "$text" ]]; then say "$file is up to date"; return 1; fi
  say "writing $file: $4"
  if [[ $DRY -eq 1 ]]; then say "would write $file"; return 1; fi
  mkdir -p "$(dirname "$file")"
  echo "$text" > "$file"
  chmod 0644 "$file"
  record "$3 ${file#"$PREFIX"}"
}

install_alsa() {
  local server card slave channels text
  if server="$(sound_server)"; then
    say "a sound server owns ALSA's default here ($server): leaving ALSA alone"
    return
  fi
  if [[ -e "$ALSA_CONF" ]] && ! grep -q "voice-device's installer" "$ALSA_CONF"; then
    say "note: $ALSA_CONF is not ours; leaving it"
    return
  fi
  if ! card="$(alsa_card)"; then
    if [[ -e "$ALSA_CONF" ]]; then say "$ALSA_CONF kept"; return; fi
    say "no single sound card with a microphone found: ALSA left as it is (one reader at a time holds the mic;"
    say "  pass --alsa-card CARD to share a card, see /proc/asound/cards)"
    return
  fi
  slave="hw:CARD=$card,DEV=0"
  [[ "$card" =~ ^[0-9]+$ ]] && slave="hw:$card,0"
  if grep -qsF "(scripts/install.sh --alsa-card $card)" "$ALSA_CONF"; then
    # Not probed again (the daemon holds the card now): the channel count the first install saw.
    channels="$(sed -n 's/.* channels \([0-9][0-9]*\) rate.*/\1/p' "$ALSA_CONF" | head -1)"
  else
    channels="$(alsa_channels "$slave")"
  fi
  text="$(alsa_text "$card" "$slave" "${channels:-2}")"
  write_ours "$ALSA_CONF" "$text" alsa "card $card shared (dsnoop/dmix) as ALSA's default" || return 0
  CHANGED=1
}

# The device nodes the unit's SupplementaryGroups= and DeviceAllow= are for: each subsystem's nodes to its group,
# as Raspberry Pi OS's 99-com.rules gives them. Plain Debian has no such rule (/dev/gpiochip0 is root's, 0600), so
# the daemon, the voice-device user in the gpio group, could not open the chip (seen in the VM suite, whose kernel
# has a simulated chip: tests/vm/test_5_gpio.py).
UDEV_GROUPS=("gpio gpio" "spidev spi")  # subsystem, group

udev_rule_elsewhere() {  # $1 subsystem, $2 group: a rule other than ours already gives its nodes to that group
  local f
  for f in "$PREFIX"/usr/lib/udev/rules.d/*.rules "$PREFIX"/lib/udev/rules.d/*.rules \
           "$PREFIX"/etc/udev/rules.d/*.rules; do
    [[ -f "$f" && "$f" != "$UDEV_RULE" ]] || continue
    grep -qE "SUBSYSTEM==\"$1\".*GROUP=\"$2\"" "$f" && return 0
  done
  return 1
}

udev_text() {  # the rule for the subsystems no other rule gives to their group; nothing when every one is covered
  local pair subsystem group lines=""
  for pair in "${UDEV_GROUPS[@]}"; do
    read -r subsystem group <<< "$pair"
    udev_rule_elsewhere "$subsystem" "$group" \
      || lines+="SUBSYSTEM==\"$subsystem\", GROUP=\"$group\", MODE=\"0660\""$'\n'
  done
  [[ -n "$lines" ]] || return 0
  cat <<EOF
# Written by voice-device's installer (scripts/install.sh); --uninstall removes it.
# The daemon runs as the voice-device user in the gpio and spi groups: these lines give it the GPIO chips (its
# button and LEDs, /dev/gpiochip*) and the SPI devices (an APA102 LED ring, /dev/spidev*), as Raspberry Pi OS's
# 99-com.rules does; a subsystem another rule already gives to its group is left out.
${lines%$'\n'}
EOF
}

udev_apply() {  # the rules as they now are, for the nodes that exist now (in a chroot: from the next boot)
  if systemd_running && command -v udevadm >/dev/null; then
    sys udevadm control --reload
    sys udevadm trigger --action=change --subsystem-match=gpio --subsystem-match=spidev
  fi
}

install_udev() {
  local text
  if [[ -e "$UDEV_RULE" ]] && ! grep -q "voice-device's installer" "$UDEV_RULE"; then
    say "note: $UDEV_RULE is not ours; leaving it"
    return
  fi
  text="$(udev_text)"
  if [[ -z "$text" ]]; then
    say "udev already gives the GPIO chips and SPI devices to their groups"
    return
  fi
  write_ours "$UDEV_RULE" "$text" udev "GPIO chips to the gpio group, SPI devices to spi (no rule gave them)" \
    || return 0
  udev_apply
}

install_unit() {
  local changed=0
  if ! cmp -s "$SRC/systemd/voice-device.service" "$UNIT"; then
    say "installing $UNIT"
    run mkdir -p "$(dirname "$UNIT")"
    run install -m 0644 "$SRC/systemd/voice-device.service" "$UNIT"
    changed=1
    CHANGED=1
  else
    say "$UNIT is up to date"
  fi
  if systemd_running; then
    [[ $changed -eq 1 ]] && sys systemctl daemon-reload
    systemctl -q is-enabled voice-device.service 2>/dev/null || sys systemctl enable voice-device.service
    if [[ $CHANGED -eq 1 ]]; then sys systemctl try-restart voice-device.service; fi
  elif systemd_offline; then
    systemctl -q is-enabled voice-device.service 2>/dev/null || sys systemctl enable voice-device.service
    say "systemd is not running here (an image being built?): the service starts at the next boot"
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
  if systemd_offline && systemctl -q is-enabled voice-device.service 2>/dev/null; then
    sys systemctl disable voice-device.service
  fi
  if [[ -e "$UNIT" ]]; then run rm -f "$UNIT"; fi
  if systemd_running; then sys systemctl daemon-reload; fi
  local created=()
  if [[ -f "$MANIFEST" ]]; then mapfile -t created < "$MANIFEST"; fi
  for line in "${created[@]}"; do
    case "$line" in
      "link "*) if [[ -L "$PREFIX${line#link }" ]]; then run rm -f "$PREFIX${line#link }"; fi ;;
      "alsa "*) if grep -qs "voice-device's installer" "$PREFIX${line#alsa }"; then run rm -f "$PREFIX${line#alsa }"; fi ;;
      "udev "*) if grep -qs "voice-device's installer" "$PREFIX${line#udev }"; then
                  run rm -f "$PREFIX${line#udev }"
                  udev_apply
                fi ;;
    esac
  done
  # systemd's StateDirectory=: its files belong to the user removed below
  if [[ -d "$STATE" ]]; then run rm -rf "$STATE"; fi
  if [[ $PURGE -eq 1 ]]; then
    if [[ -d "$ETC" ]]; then run rm -rf "$ETC"; fi
  elif [[ -d "$ETC" ]]; then
    sys chown -R root:root "$ETC"  # its group goes with the user
  fi
  for line in "${created[@]}"; do
    [[ "$line" == "user $SERVICE_USER" ]] && sys userdel "$SERVICE_USER"
  done
  for line in "${created[@]}"; do
    if [[ "$line" == group\ * ]] && getent group "${line#group }" >/dev/null; then sys groupdel "${line#group }"; fi
  done
  if [[ -d "$OPT" ]]; then run rm -rf "$OPT"; fi
  if [[ $PURGE -eq 1 ]]; then
    say "removed voice-device, its configuration and secrets"
  else
    say "removed voice-device; kept $CONFIG and $ENVFILE (now root:root; --uninstall --purge removes them)"
  fi
}

check_platform
if [[ $UNINSTALL -eq 1 ]]; then
  [[ -z "$ENV_INPUT" ]] || die "--env-file goes with an install, not with --uninstall" 2
  uninstall
  exit 0
fi
[[ -z "$WHEEL" || -f "$WHEEL" ]] || die "no such wheel: $WHEEL" 2
[[ -z "$ENV_INPUT" ]] || read_env_input
install_apt
install_user
install_venv
install_link
install_config
install_alsa
install_udev
install_unit
say "done. Next:"
if [[ ${#ENV_LINES[@]} -gt 0 ]]; then
  say "  1. $ENVFILE holds the lines --env-file gave; the devices and pins are in $CONFIG"
else
  say "  1. edit $ENVFILE: set VOICE_DEVICE_TOKEN_ENDPOINT and VOICE_DEVICE_CREDENTIAL (until then the service"
  say "     refuses to start on the profile's placeholders tokens.example.invalid and 'Bearer unset'); a fleet's"
  say "     token server prints both (voice-device-tokens enrol), and --env-file FILE|- merges them in; or set"
  say "     LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET for a development server; the devices and pins are"
  say "     in $CONFIG"
fi
say "  2. confirm it: sudo voice-device check    (reads both files, says what is still to set)"
say "  3. then: sudo systemctl restart voice-device && voice-device status"
