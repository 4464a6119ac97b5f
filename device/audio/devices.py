"""PortAudio device discovery: list devices, pick one by name substring (index as fallback), quietly.

Every `pyaudio.PyAudio()` prints dozens of lines of ALSA/JACK probing on fd 2; `quiet_stderr()` hides them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from device.core.dynamic import PaStream, PyAudio

__all__ = ["PaStream", "PyAudio"]  # re-exported for the engine, capture and player


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate: float
    is_default_input: bool
    is_default_output: bool

    def as_json(self) -> dict[str, object]:
        return asdict(self)


class DeviceNotFound(Exception):
    """No device matches; the message lists what exists so a person can fix the config."""


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Point fd 2 at /dev/null for the duration (PortAudio's probing noise), even for native code."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def open_pyaudio() -> PyAudio:
    import pyaudio

    with quiet_stderr():
        return pyaudio.PyAudio()


def list_devices(pa: PyAudio | None = None) -> list[DeviceInfo]:
    own = pa is None
    pa = pa or open_pyaudio()
    try:
        try:
            default_in = pa.get_default_input_device_info()["index"]
        except OSError:
            default_in = -1
        try:
            default_out = pa.get_default_output_device_info()["index"]
        except OSError:
            default_out = -1
        out = []
        for i in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(i)
            out.append(
                DeviceInfo(
                    index=int(info["index"]),
                    name=str(info["name"]),
                    max_input_channels=int(info["maxInputChannels"]),
                    max_output_channels=int(info["maxOutputChannels"]),
                    default_sample_rate=float(info["defaultSampleRate"]),
                    is_default_input=int(info["index"]) == default_in,
                    is_default_output=int(info["index"]) == default_out,
                )
            )
        return out
    finally:
        if own:
            pa.terminate()


def pick_device(devices: list[DeviceInfo], name: str, index: int | None, direction: str) -> DeviceInfo:
    """The first `direction` ('input'/'output') device whose name contains `name` (case-insensitive);
    `default` means the system default; `index` is the fallback when no name matches."""
    usable = [d for d in devices if (d.max_input_channels if direction == "input" else d.max_output_channels) > 0]
    if name.lower() == "default":
        for d in usable:
            if d.is_default_input if direction == "input" else d.is_default_output:
                return d
    for d in usable:
        if name.lower() in d.name.lower():
            return d
    if index is not None:
        for d in usable:
            if d.index == index:
                return d
    listed = "; ".join(f"{d.index}: {d.name}" for d in usable) or "none (is the sound card or PulseAudio up?)"
    raise DeviceNotFound(
        f"no {direction} device matches {name!r}"
        + (f" or index {index}" if index is not None else "")
        + f"; {direction} devices present: {listed}. Set audio.{direction}_device to part of one of these names."
    )
