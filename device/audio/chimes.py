"""The sounds that ship with voice-device, synthesised at start-up (no files): short, soft, and unlike speech.

Each cue is a few notes of a bell-like tone (a fundamental with two quiet overtones, a 5 ms attack and an
exponential decay), so the device is not silent out of the box and the cues are told apart by ear: rising for
"I heard you" (wake, listening), falling for "done" (conversation end, stopped), low and doubled for an error.
Computed with numpy in a millisecond or two; deterministic, so a test can check pitch, length and level.
"""

from __future__ import annotations

import numpy as np

PEAK = 0.3  # of full scale: audible next to speech, never clipping after the player's volume
NOTE_S = 0.09
GAP_S = 0.02

# name → the notes (Hz) played one after the other
CHIMES: dict[str, tuple[float, ...]] = {
    "wake": (659.3, 987.8),  # E5 → B5: rising fifth
    "listening": (880.0,),  # A5
    "stopped": (523.3,),  # C5
    "conversation_end": (987.8, 659.3),  # B5 → E5: falling fifth
    "error": (233.1, 233.1),  # B♭3 twice
}


def note(freq: float, rate: int, seconds: float = NOTE_S) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    tone = np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t) + 0.1 * np.sin(6 * np.pi * freq * t)
    envelope = np.minimum(1.0, t / 0.005) * np.exp(-t / (seconds / 3))
    shaped: np.ndarray = tone * envelope
    return shaped


def chime(name: str, rate: int) -> np.ndarray:
    """The cue `name` (a key of CHIMES) as int16 mono at `rate`."""
    gap = np.zeros(int(GAP_S * rate))
    parts: list[np.ndarray] = []
    for i, freq in enumerate(CHIMES[name]):
        if i:
            parts.append(gap)
        parts.append(note(freq, rate))
    x = np.concatenate(parts)
    samples: np.ndarray = np.rint(x * (PEAK * 32767 / np.abs(x).max())).astype(np.int16)
    return samples
