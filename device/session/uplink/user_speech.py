"""Is the user speaking? The session's speech gates, one per kind of mode (`Mode.follow_up`).

The uplink asks its gate about every chunk of the session's mic audio (`heard(first, samples)`) and reports
`UserSpeech` to the policy at most twice a second while the answer is yes; the policy re-arms its idle timer on
it and remembers that the user spoke (a wake-word session where nobody did was most likely a false wake).

- `EnergyGate` — the level of the chunk above `session.speech_threshold_dbfs` (−45 dBFS): cheap, and enough to
  keep a push-to-talk or toggle session from timing out while someone talks; a television keeps it open.
- `VadGate` — pymicro-vad (device/audio/vad.py) over the same chunks, for the wake word's follow-up window:
  speech, not noise or music, decides whether the conversation goes on. It counts only speech at or after
  `from_index` (where the wake phrase ended, plus the detector's own release time), so the wake phrase itself is
  not "the user answered", and only frames inside a run of speech (not the detector's hangover after it).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from device.audio.levels import rms_dbfs
from device.audio.vad import VoiceActivityDetector


class SpeechGate(Protocol):
    def heard(self, first: int, samples: np.ndarray) -> bool:
        """Whether this chunk (whole 10 ms frames from ring index `first`) holds the user's speech."""
        ...


class EnergyGate:
    def __init__(self, threshold_dbfs: float) -> None:
        self.threshold = threshold_dbfs

    def heard(self, first: int, samples: np.ndarray) -> bool:
        return rms_dbfs(samples) > self.threshold


VAD_RELEASE_S = 0.6  # pymicro-vad still scores speech this long after it ended (0.35–0.47 s on espeak-ng)


class VadGate:
    def __init__(self, rate: int, threshold: float, from_index: int = 0) -> None:
        """Speech counts from `from_index` plus the detector's release: the tail of the wake phrase is not an
        answer (a command said in the same breath goes on long past it)."""
        self.vad = VoiceActivityDetector(rate, threshold=threshold)
        self.from_index = from_index + int(VAD_RELEASE_S * rate)

    def heard(self, first: int, samples: np.ndarray) -> bool:
        self.vad.feed(first, samples)
        voiced = self.vad.voiced_until
        return voiced is not None and voiced > max(first, self.from_index)
