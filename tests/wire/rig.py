"""Talking into and listening to the virtual audio rig (scripts/virtual-audio.sh) from a test or the demo.

The rig's speaker `spk` is a null sink whose monitor feeds the microphone `mic`: whatever is played to `spk`
(paplay) is what the daemon's microphone hears, and `spk.monitor` (parec) is what its speaker played.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np


def pulse_env(pulse_server: str) -> dict[str, str]:
    return {**os.environ, "PULSE_SERVER": pulse_server}


def play_into_mic(pulse_server: str, wav: Path) -> subprocess.Popen[bytes]:
    """Start playing `wav` to the rig's speaker, i.e. into its microphone; returns at once."""
    return subprocess.Popen(["paplay", "-d", "spk", str(wav)], env=pulse_env(pulse_server),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class SpeakerRecorder:
    """Records what the rig's speaker plays (48 kHz mono int16) until `stop()`."""

    def __init__(self, pulse_server: str, path: Path) -> None:
        self.path = path
        self._file = path.open("wb")
        self._proc = subprocess.Popen(
            ["parec", "-d", "spk.monitor", "--rate=48000", "--channels=1", "--format=s16le", "--raw",
             "--latency-msec=20"],
            env=pulse_env(pulse_server), stdout=self._file, stderr=subprocess.DEVNULL)

    def stop(self) -> np.ndarray:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._file.close()
        data = self.path.read_bytes()
        return np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2").astype(np.int16)
