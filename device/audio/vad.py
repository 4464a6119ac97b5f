"""Voice activity for the follow-up window: has the user started speaking again, and where in the ring?

pymicro-vad (a small neural network, self-contained) scores every 10 ms of 16 kHz audio; the pipeline audio is
brought to 16 kHz by the same decimator as the wake word's. Speech begins when `min_speech_ms` of consecutive
frames score above `threshold`; it is over after `hangover_ms` below, and the next onset is reported again.
The onset's ring index is the first frame of that run: pymicro-vad's score rises 0.1–0.45 s into an utterance
(measured on espeak-ng sentences), so the index is that much after the first sound — fine for deciding that the
user went on talking, not for cutting audio.
Defaults (threshold 0.7, 100 ms): every espeak-ng sentence of the test set is found, and a minute of TV-like
music starts "speech" once (six times at threshold 0.5).

Why pymicro-vad and not webrtcvad (benchmarks/vad.py, same audio, this machine): both find espeak-ng speech
(frame recall 0.99 for pymicro-vad; 0.96 for webrtcvad's mode 2), but webrtcvad calls a TV-like signal (music,
no speech) speech in every frame in every mode, and steady pink noise at -30 dBFS in 3.5–27 % of frames
(mode 3 … 0), while pymicro-vad at 0.7 flags none of the noise and 0.8 % of the music frames (3.4 % at 0.5). A
follow-up window that a television keeps open is the complaint (users.md). What it costs: ~13.5 ms of CPU per
second of audio against webrtcvad's 0.2 (1.4 % of a core, only while a follow-up window is open); its onset
comes ~0.15 s into an utterance (webrtcvad: at once), and it lets go ~0.6 s after speech ends (webrtcvad:
~0.3 s) — neither matters to "did the user go on talking".
"""

from __future__ import annotations

import numpy as np

from device.audio.downsample import Frames16k


class VoiceActivityDetector:
    """Speech onsets in pipeline audio addressed by ring index."""

    def __init__(self, rate: int, *, threshold: float = 0.7, min_speech_ms: int = 100, hangover_ms: int = 300,
                 max_chunk_ms: int = 200) -> None:
        from pymicro_vad import MicroVad

        self.rate = rate
        self.threshold = threshold
        self._min_frames = max(1, min_speech_ms // 10)
        self._hangover = max(1, hangover_ms // 10)
        self._vad = MicroVad()
        self._in = Frames16k(rate, max_chunk_ms)
        self._run = 0  # consecutive frames above the threshold
        self._quiet = 0  # consecutive frames below it while speaking
        self.speaking = False
        self.probability = 0.0  # the latest frame's score
        self.voiced_until: int | None = None  # ring index just past the last frame inside a run of speech

    def feed(self, first_index: int, samples: np.ndarray) -> int | None:
        """Score whole 10 ms frames of pipeline audio starting at ring index `first_index`; the ring index where
        speech began if it began in them (once per stretch of speech)."""
        onset: int | None = None
        for frame in self._in.frames(first_index, samples):
            found = self._frame(frame)
            onset = found if onset is None else onset
        return onset

    def reset(self) -> None:
        """Forget what was heard (a new follow-up window starts from silence)."""
        self._vad.reset()
        self._in.reset()
        self._run = self._quiet = 0
        self.speaking = False
        self.probability = 0.0
        self.voiced_until = None

    def _frame(self, pcm16: np.ndarray) -> int | None:
        self.probability = p = self._vad.process_10ms(pcm16.tobytes())
        if p > self.threshold:
            self._run += 1
            self._quiet = 0
            if self._run >= self._min_frames:
                self.voiced_until = self._in.ring_index(self._in.position)
            if not self.speaking and self._run >= self._min_frames:
                self.speaking = True
                return self._in.ring_index(self._in.position - self._run * Frames16k.FRAME)
            return None
        self._run = 0
        if self.speaking:
            self._quiet += 1
            if self._quiet >= self._hangover:
                self.speaking = False
        return None
