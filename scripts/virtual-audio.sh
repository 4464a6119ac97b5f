#!/usr/bin/env bash
# A virtual sound card for machines without one: a private PulseAudio with a null sink `spk` whose monitor feeds a
# virtual source `mic` (both defaults), reached by PyAudio through ALSA's pulse plugin.
#   scripts/virtual-audio.sh start   # installs the apt packages if missing, starts it (idempotent)
#   scripts/virtual-audio.sh env     # prints: export PULSE_SERVER=unix:<dir>/native
#   scripts/virtual-audio.sh stop    # ends that PulseAudio by its recorded PID
#   scripts/virtual-audio.sh status
# The state lives in $VOICE_DEVICE_AUDIO_DIR (default /tmp/voice-device-audio-$UID), so tests can run their own.
set -euo pipefail

DIR="${VOICE_DEVICE_AUDIO_DIR:-/tmp/voice-device-audio-$(id -u)}"
SOCK="$DIR/native"
PIDFILE="$DIR/pulseaudio.pid"
APT_PACKAGES=(portaudio19-dev pulseaudio pulseaudio-utils libasound2-plugins)

say() { echo "virtual-audio: $*" >&2; }

running() {
  [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && [[ -S "$SOCK" ]]
}

ensure_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    say "missing packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
  say "installing ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

start() {
  if running; then
    say "already running (pid $(cat "$PIDFILE"), PULSE_SERVER=unix:$SOCK)"
    return 0
  fi
  ensure_packages
  mkdir -p "$DIR/home" "$DIR/runtime"
  chmod 700 "$DIR" "$DIR/runtime"
  rm -f "$SOCK"
  cat > "$DIR/default.pa" <<PA
load-module module-native-protocol-unix auth-anonymous=1 socket=$SOCK
load-module module-null-sink sink_name=spk rate=48000 channels=1 norewinds=1 sink_properties=device.description=virtual-speaker
load-module module-virtual-source source_name=mic master=spk.monitor source_properties=device.description=virtual-mic
set-default-sink spk
set-default-source mic
PA
  # No system/dbus modules, no autospawn, never exits on idle: a private server for this rig only.
  HOME="$DIR/home" XDG_RUNTIME_DIR="$DIR/runtime" PULSE_RUNTIME_PATH="$DIR/runtime" \
    setsid pulseaudio -n -F "$DIR/default.pa" --daemonize=no --exit-idle-time=-1 --disallow-exit \
    --use-pid-file=no --log-target=file:"$DIR/pulseaudio.log" >/dev/null 2>&1 &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 100); do
    [[ -S "$SOCK" ]] && PULSE_SERVER="unix:$SOCK" pactl info >/dev/null 2>&1 && break
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { say "PulseAudio failed to start; see $DIR/pulseaudio.log"; exit 1; }
    sleep 0.05
  done
  running || { say "PulseAudio did not open $SOCK; see $DIR/pulseaudio.log"; exit 1; }
  say "started (pid $(cat "$PIDFILE")): sink spk, source mic; PULSE_SERVER=unix:$SOCK"
}

stop() {
  if [[ -f "$PIDFILE" ]]; then
    local pid
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
  fi
  rm -f "$SOCK"
  say "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "export PULSE_SERVER=unix:$SOCK" ;;
  status) if running; then echo "running pid=$(cat "$PIDFILE") PULSE_SERVER=unix:$SOCK"; else echo "stopped"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
