#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 / Raspberry Pi OS (64-bit) machine for voice-device development:
# apt packages (only those missing; on x86_64 also qemu and debootstrap for the VM suite), a virtualenv in .venv,
# the package with its test extra. Every program the daemon and the suites run is listed with its package in
# tests/programs.py; tests/test_programs.py fails when one of those packages is missing from the lists below.
# Sourced or run by scripts/demo and scripts/test; safe to run again (it skips what is already done).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VOICE_DEVICE_VENV:-$ROOT/.venv}"
APT_PACKAGES=(python3-venv python3-dev gcc portaudio19-dev pulseaudio pulseaudio-utils libasound2-plugins alsa-utils procps
  iproute2 espeak-ng sox systemd tcpdump nftables iptables libnetfilter-queue-dev redis-server redis-tools
  prometheus-node-exporter)

say() { echo "setup: $*" >&2; }

# shellcheck source=lib/platform.sh
source "$ROOT/scripts/lib/platform.sh"
refusal="$(userland_refusal)"
if [[ -n "$refusal" ]]; then say "$refusal"; exit 1; fi
arch=$(uname -m)

# The VM suites (tests/vm, tests/vm_arm64): qemu's software emulation of an x86_64 and of an arm64 (Raspberry Pi
# shaped) appliance, debootstrap for their images, qemu-user-static so the arm64 image's packages configure and its
# installer runs in a chroot on this machine (binfmt_misc). Without recommends: qemu's GUI and firmware extras are
# not needed for a headless -kernel boot.
VM_PACKAGES=()
[[ "$arch" == x86_64 ]] && VM_PACKAGES=(qemu-system-x86 qemu-system-arm qemu-user-static debootstrap e2fsprogs
  openssl)

apt_missing() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
mapfile -t missing < <(apt_missing "${APT_PACKAGES[@]}")
mapfile -t vm_missing < <(apt_missing "${VM_PACKAGES[@]}")
if [[ ${#missing[@]} -gt 0 || ${#vm_missing[@]} -gt 0 ]]; then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  say "installing apt packages: ${missing[*]} ${vm_missing[*]}"
  $SUDO apt-get update -qq >/dev/null
  if [[ ${#missing[@]} -gt 0 ]]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [[ ${#vm_missing[@]} -gt 0 ]]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${vm_missing[@]}" >/dev/null
  fi
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
# The fleet's token endpoint (tokenserver/, the `voice-device-tokens` command): its own project, installed editable
# into this venv (its dependencies are the device's own); tests/tokenserver and the cluster suite run it. The stamp
# names the checkout, so a venv shared by two checkouts follows the one that ran this last.
tokens_want="$(sha256sum "$ROOT/tokenserver/pyproject.toml" | cut -d' ' -f1) $ROOT"
tokens_stamp="$VENV/.voice-device-tokens"
if [[ ! -f "$tokens_stamp" || "$(cat "$tokens_stamp")" != "$tokens_want" ]] \
  || ! "$VENV/bin/python" -c 'import voice_device_tokens' 2>/dev/null; then
  say "installing the token endpoint (tokenserver/) into $VENV"
  log="$VENV/.voice-device-tokens-pip.log"
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT/tokenserver" > "$log" 2>&1 \
    || ! "$VENV/bin/python" -c 'import voice_device_tokens.cli'; then
    tail -20 "$log" >&2
    say "the token endpoint's install did not complete (whole log in $log)"; exit 1
  fi
  echo "$tokens_want" > "$tokens_stamp"
fi

# The agent side (tests/livekit, tests/agent): a livekit-agents worker in its own venv (livekit-agents 1.8.9 pins
# livekit 1.1.21; the daemon keeps its own pins) with the companion (agent/, voice_device_agent) installed from this
# checkout, editable; and livekit-server built from its pinned tag when Go is here.
AGENT_VENV="${VOICE_DEVICE_AGENT_VENV:-$ROOT/.venv-agent}"
AGENT_PINS=(livekit-agents==1.8.9 livekit-plugins-silero==1.8.9)
agent_want="${AGENT_PINS[*]} companion:$(sha256sum "$ROOT/agent/pyproject.toml" | cut -d' ' -f1)"
agent_stamp="$AGENT_VENV/.voice-device-agent"
if [[ ! -f "$agent_stamp" || "$(cat "$agent_stamp")" != "$agent_want" ]] \
  || ! "$AGENT_VENV/bin/python" -c 'import voice_device_agent' 2>/dev/null; then
  [[ -x "$AGENT_VENV/bin/python" ]] || { say "creating the test agent's virtualenv $AGENT_VENV"; "$PY" -m venv "$AGENT_VENV"; }
  say "installing ${AGENT_PINS[*]} and the companion (agent/) into $AGENT_VENV"
  log="$AGENT_VENV/.pip.log"
  if ! "$AGENT_VENV/bin/python" -m pip install -q --disable-pip-version-check "${AGENT_PINS[@]}" -e "$ROOT/agent" \
      > "$log" 2>&1 \
    || ! "$AGENT_VENV/bin/python" -c 'import livekit.agents, livekit.plugins.silero, voice_device_agent'; then
    tail -30 "$log" >&2
    say "the test agent's install did not complete (whole log in $log)"; exit 1
  fi
  echo "$agent_want" > "$agent_stamp"
fi
# The real-stack delay fault (tests/livekit/delay_queue.py): the kernel's NFQUEUE target read by NetfilterQueue
# (built against libnetfilter-queue-dev), in the test venv only; the daemon never imports it.
NFQ_PIN="NetfilterQueue==1.1.0"
if ! "$VENV/bin/python" -c 'import netfilterqueue' 2>/dev/null; then
  say "installing $NFQ_PIN into $VENV (tests only)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$NFQ_PIN" > "$VENV/.nfq-pip.log" 2>&1 \
    || { tail -20 "$VENV/.nfq-pip.log" >&2; say "$NFQ_PIN did not install (log in $VENV/.nfq-pip.log)"; exit 1; }
fi
server_rc=0
bash "$ROOT/scripts/livekit-server.sh" >/dev/null || server_rc=$?
# no Go (3): the real-server tests skip, and fail under CI=true; a failed build is an error either way
if [[ $server_rc -ne 0 && $server_rc -ne 3 ]]; then exit "$server_rc"; fi
