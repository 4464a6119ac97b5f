"""The agent's voice: an aiortc audio track that plays queued PCM in real time and silence otherwise."""

from __future__ import annotations

import asyncio
import fractions
import time
import wave
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from aiortc import MediaStreamTrack

RATE = 48000
FRAME = 960  # 20 ms, what aiortc's Opus encoder wants


def load_wav(path: Path) -> np.ndarray:
    """A WAV file as 48 kHz mono int16 (any rate / channel count / 16-bit PCM)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: the agent reply must be 16-bit PCM WAV")
        rate, channels, raw = w.getframerate(), w.getnchannels(), w.readframes(w.getnframes())
    return to_48k_mono(np.frombuffer(raw, dtype="<i2"), rate, channels)


def to_48k_mono(samples: np.ndarray, rate: int, channels: int) -> np.ndarray:
    if rate == RATE and channels == 1:
        return samples.astype(np.int16)
    frame = av.AudioFrame.from_ndarray(samples.astype(np.int16).reshape(1, -1),
                                       format="s16", layout="mono" if channels == 1 else "stereo")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = [f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(out).astype(np.int16) if out else np.zeros(0, dtype=np.int16)


class ReplyTrack(MediaStreamTrack):
    """Paced 20 ms frames; `play()` queues speech, `on_drained` fires when the queue runs dry."""

    kind = "audio"

    def __init__(self, on_drained: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._queue = np.zeros(0, dtype=np.int16)
        self._pts = 0
        self._start: float | None = None
        self.on_drained = on_drained
        self.frames_sent = 0

    @property
    def speaking(self) -> bool:
        return len(self._queue) > 0

    def play(self, samples: np.ndarray) -> None:
        self._queue = np.concatenate([self._queue, samples.astype(np.int16)])

    def stop_speaking(self) -> None:
        self._queue = np.zeros(0, dtype=np.int16)

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._pts / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        was_speaking = self.speaking
        chunk, self._queue = self._queue[:FRAME], self._queue[FRAME:]
        if len(chunk) < FRAME:
            chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), dtype=np.int16)])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += FRAME
        self.frames_sent += 1
        if was_speaking and not self.speaking and self.on_drained is not None:
            self.on_drained()
        return frame
