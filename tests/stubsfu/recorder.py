"""What the agent heard in one session, written to `<dir>/preconnect.raw`, `heard.wav` and `meta.json`.

`heard.wav` is the pre-connect buffer followed by the live audio the agent received after subscribing, at the
buffer's rate and channel count (48 kHz mono when no buffer was used). Live audio starts at the first
non-silent sample after the subscription: until the client closes its buffer and feeds the track, the track
carries digital silence, and counting that would show a gap at the seam that the client did not make (the
trimmed length is `live_trimmed_ms` in meta.json). After that, live audio is placed by its RTP timestamps, so
a hole in the packets (DTX, loss) becomes silence instead of shortening the recording.
"""

from __future__ import annotations

import json
import logging
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np

log = logging.getLogger("tests.stubsfu.recorder")

SILENCE_LEVEL = 2  # |int16| at or below this is digital silence (Opus decodes silence to 0 ± 1)
MAX_GAP_S = 5.0  # a longer hole in the timestamps is a new talk spurt after a stall, not silence to fill


class SessionRecorder:
    """Accumulates one session's audio and metadata; `flush()` rewrites the files."""

    def __init__(self, directory: Path, meta: dict[str, Any]) -> None:
        self.directory = directory
        self.meta: dict[str, Any] = {
            "track_id": "", "published_track_sid": "", "preconnect_status": "pending",
            "preconnect_attributes": {}, "preconnect_topic": "", "preconnect_mime_type": "",
            "preconnect_samples": 0, "sample_rate": 48000, "channels": 1, "live_first_sample_index": 0,
            "stream_open_to_close_ms": None, "rpc_calls": [], "turns": [], **meta,
        }
        self._preconnect = np.zeros(0, dtype=np.int16)
        self._live: list[np.ndarray] = []
        self._live_samples = 0  # per channel
        self._resampler: av.AudioResampler | None = None
        self._next_pts: int | None = None
        self._live_started = False
        self._leading = True  # still skipping the silence before the client's first live sound
        self._trimmed = 0
        self.dirty = True

    @property
    def sample_rate(self) -> int:
        return int(self.meta["sample_rate"])

    @property
    def channels(self) -> int:
        return int(self.meta["channels"])

    def set_preconnect(self, raw: bytes, sample_rate: int, channels: int) -> None:
        """Use the buffer as the start of heard.wav (must come before live audio)."""
        if self._live_started:
            raise RuntimeError("pre-connect audio must be set before live audio")
        usable = len(raw) - len(raw) % (2 * channels)
        self._preconnect = np.frombuffer(raw[:usable], dtype="<i2").astype(np.int16)
        self.meta.update(sample_rate=sample_rate, channels=channels,
                         preconnect_samples=len(self._preconnect) // channels,
                         live_first_sample_index=len(self._preconnect) // channels)
        self.dirty = True

    def add_live(self, frame: av.AudioFrame) -> np.ndarray:
        """Append one received frame; returns its samples (int16, interleaved, at the session's rate)."""
        self._live_started = True
        if self._resampler is None:
            layout = "mono" if self.channels == 1 else "stereo"
            self._resampler = av.AudioResampler(format="s16", layout=layout, rate=self.sample_rate)
        out = [np.frombuffer(f.to_ndarray().tobytes(), dtype=np.int16) for f in self._resampler.resample(frame)]
        samples = np.concatenate(out) if out else np.zeros(0, dtype=np.int16)
        if self._leading:
            # Live audio starts at the first sound the client sent after the subscription, not at the
            # subscription: before it the track carries the digital silence of a source nobody feeds yet.
            loud = np.flatnonzero(np.abs(samples) > SILENCE_LEVEL)
            if not len(loud):
                self._trimmed += len(samples) // self.channels
                self.meta["live_trimmed_ms"] = round(self._trimmed * 1000 / self.sample_rate, 1)
                return np.zeros(0, dtype=np.int16)
            start = loud[0] - loud[0] % self.channels
            self._trimmed += start // self.channels
            self.meta["live_trimmed_ms"] = round(self._trimmed * 1000 / self.sample_rate, 1)
            samples = samples[start:]
            self._leading = False
        elif frame.pts is not None and frame.sample_rate and self._next_pts is not None:
            gap = frame.pts - self._next_pts
            if 0 < gap <= MAX_GAP_S * frame.sample_rate:
                self._append(np.zeros(round(gap * self.sample_rate / frame.sample_rate) * self.channels,
                                      dtype=np.int16))
        if frame.pts is not None:
            self._next_pts = frame.pts + frame.samples
        self._append(samples)
        return samples

    def _append(self, samples: np.ndarray) -> None:
        if len(samples):
            self._live.append(samples)
            self._live_samples += len(samples) // self.channels
            self.dirty = True

    @property
    def length(self) -> int:
        """Samples per channel in heard.wav so far."""
        return len(self._preconnect) // self.channels + self._live_samples

    def heard(self) -> np.ndarray:
        return np.concatenate([self._preconnect, *self._live]) if self._live else self._preconnect.copy()

    def flush(self, preconnect_raw: bytes | None = None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if preconnect_raw is not None:
            (self.directory / "preconnect.raw").write_bytes(preconnect_raw)
        tmp = self.directory / "heard.wav.tmp"
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(self.channels)
            w.setsampwidth(2)
            w.setframerate(self.sample_rate)
            w.writeframes(self.heard().astype("<i2").tobytes())
        tmp.replace(self.directory / "heard.wav")
        self.meta["live_samples"] = self._live_samples
        tmp = self.directory / "meta.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=2, sort_keys=True))
        tmp.replace(self.directory / "meta.json")
        self.dirty = False
