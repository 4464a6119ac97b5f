#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 / Raspberry Pi OS (64-bit) machine for voice-device development:
# apt packages (only those missing), a virtualenv in .venv, the package with its test extra.
# Sourced or run by scripts/demo and scripts/test; safe to run again (it skips what is already done).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VOICE_DEVICE_VENV:-$ROOT/.venv}"
APT_PACKAGES=(python3-venv python3-dev gcc portaudio19-dev pulseaudio pulseaudio-utils libasound2-plugins
  iproute2 espeak-ng sox systemd)

say() { echo "setup: $*" >&2; }

arch=$(uname -m)
case "$arch" in
  x86_64|aarch64) ;;
  *) say "this is a $arch system: livekit ships wheels for x86_64 and aarch64 only."
     say "On a Raspberry Pi, install the 64-bit Raspberry Pi OS (bookworm)."; exit 1 ;;
esac

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  say "installing apt packages: ${missing[*]}"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  say "voice-device needs Python 3.11 or newer; $PY is $("$PY" --version 2>&1)"; exit 1
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.voice-device-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  say "installing voice-device and its test extra into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
  log="$VENV/.voice-device-pip.log"
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[test]" > "$log" 2>&1 \
    || ! "$VENV/bin/python" -c 'import device, livekit.rtc, pyaudio, gpiozero, numpy, yaml, pymicro_wakeword, pymicro_vad'; then
    grep -v -e "^WARNING: Location" -e "is ignored: it is neither" "$log" | tail -40 >&2
    say "the install did not complete (pip's output above, whole log in $log)"; exit 1
  fi
  echo "$want" > "$stamp"
fi
