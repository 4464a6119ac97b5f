"""Shared fixtures: the virtual audio rig, gpiozero's mock pins, and a clean process exit.

The livekit SDK's native threads can abort the interpreter at exit (SIGABRT after pytest's summary) when a
connect was in flight; we record pytest's exit status and leave with os._exit once everything is flushed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.programs import need

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LG_WD", tempfile.gettempdir())  # lgpio drops a FIFO in the working directory otherwise

_exit_status: int | None = None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _exit_status is None or os.environ.get("VOICE_DEVICE_NO_HARD_EXIT"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)


@dataclass
class AudioRig:
    """A private PulseAudio: null sink `spk` → monitor → virtual source `mic`; PyAudio sees it via ALSA."""

    dir: Path
    pulse_server: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "PULSE_SERVER": self.pulse_server}

    def pactl(self, *args: str) -> str:
        return subprocess.run(["pactl", *args], env=self.env(), check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="session")
def audio_rig() -> Iterator[AudioRig]:
    for program in ("pulseaudio", "pactl", "parec", "paplay"):
        need(program)
    d = Path(tempfile.mkdtemp(prefix="vd-audio-"))
    env = {**os.environ, "VOICE_DEVICE_AUDIO_DIR": str(d)}
    script = ROOT / "scripts" / "virtual-audio.sh"
    subprocess.run(["bash", str(script), "start"], env=env, check=True, capture_output=True)
    saved = os.environ.get("PULSE_SERVER")
    os.environ["PULSE_SERVER"] = f"unix:{d}/native"
    try:
        yield AudioRig(dir=d, pulse_server=os.environ["PULSE_SERVER"])
    finally:
        subprocess.run(["bash", str(script), "stop"], env=env, capture_output=True)
        if saved is None:
            os.environ.pop("PULSE_SERVER", None)
        else:
            os.environ["PULSE_SERVER"] = saved
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mock_pins() -> Iterator[object]:
    """gpiozero's own MockFactory with PWM-capable pins; every device is closed after the test."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    saved = Device.pin_factory
    factory = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = saved
