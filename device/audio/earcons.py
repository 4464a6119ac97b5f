"""Earcons: short cues (listening, stopped, error, wake, conversation_end) loaded once, played through the player.

Each cue is `builtin` (synthesised by device/audio/chimes.py, the default), a WAV file, or null (silence).
Loaded at engine start so a bad path is reported once, as a sentence, and never at the moment of a press.
A missing or unreadable file disables that cue; the device works without sounds.
"""

from __future__ import annotations

import logging
import wave

import numpy as np

from device.audio.chimes import chime
from device.config.schema import EarconsConfig

log = logging.getLogger("device.audio.earcons")

NAMES = ("listening", "stopped", "error", "wake", "conversation_end")
BUILTIN = "builtin"


class EarconError(Exception):
    pass


def load_wav(path: str) -> tuple[np.ndarray, int]:
    """int16 mono samples and the rate of a PCM WAV file (stereo is mixed down)."""
    try:
        with wave.open(path, "rb") as w:
            if w.getsampwidth() != 2:
                raise EarconError(f"{path}: only 16-bit PCM WAV is supported (got {8 * w.getsampwidth()}-bit)")
            channels, rate = w.getnchannels(), w.getframerate()
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    except (OSError, wave.Error, EOFError) as e:
        raise EarconError(f"{path}: cannot read it as a WAV file ({e})") from None
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data, rate


def load_earcons(config: EarconsConfig, rate: int) -> dict[str, tuple[np.ndarray, int]]:
    """The configured cues as (samples, rate); built-in ones are made at `rate` (the pipeline's)."""
    sounds: dict[str, tuple[np.ndarray, int]] = {}
    for name in NAMES:
        path = getattr(config, name)
        if not path:
            continue
        if path == BUILTIN:
            sounds[name] = (chime(name, rate), rate)
            continue
        try:
            sounds[name] = load_wav(path)
        except EarconError as e:
            log.warning("earcon disabled name=%s reason=%s; fix audio.earcons.%s or remove it", name, e, name)
    return sounds
