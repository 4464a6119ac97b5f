# Sourced by scripts/setup.sh and scripts/install.sh: is this a system the livekit SDK has a native library for?

# userland_refusal: prints nothing on a 64-bit userland (amd64, arm64); else the sentence to stop with. What counts is
# the userland's architecture, not the kernel's: 32-bit Raspberry Pi OS on a Pi 4/5 boots a 64-bit kernel, so
# `uname -m` says aarch64 while dpkg and pip install armhf packages, and pip then finds no livekit wheel.
userland_refusal() {
  local kernel userland
  kernel="$(uname -m)"
  userland="$(dpkg --print-architecture 2>/dev/null || true)"
  if [[ -z "$userland" ]]; then
    if [[ "$(getconf LONG_BIT 2>/dev/null || echo 64)" == 32 ]]; then userland=32-bit; else userland="$kernel"; fi
  fi
  case "$userland" in
    amd64|arm64|x86_64|aarch64) ;;
    armhf|armel|i386|i686|32-bit|arm*)
      echo "this is a 32-bit system (userland $userland, kernel $kernel): voice-device needs a 64-bit OS because LiveKit ships its native library for aarch64 and x86_64 only (a 32-bit Raspberry Pi OS on a Pi 4/5 runs a 64-bit kernel, which is why uname alone says aarch64). Install Raspberry Pi OS Lite (64-bit, bookworm) and run this again." ;;
    *) echo "unsupported architecture $userland (kernel $kernel): voice-device runs on aarch64 (64-bit Raspberry Pi OS) or x86_64." ;;
  esac
}
