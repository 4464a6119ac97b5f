"""Pipeline audio (16, 24 or 48 kHz) down to the 16 kHz the wake-word and voice-activity models take.

Each converter takes whole 10 ms frames at the pipeline rate and returns a view of a preallocated 16 kHz
buffer (valid until the next call), so following the mic allocates nothing per frame on the common paths:
- 16 kHz: the block itself.
- 48 kHz: an exact decimation by 3 through a 48-tap windowed-sinc low-pass: one matrix-vector product per block
  over a strided view of the filter's history and the block (no copy). Against `rtc.AudioResampler` on the same
  30 ms blocks (benchmarks/wakeword.py `downsample_*`, least of three runs, a shared machine): 0.9–1.3 ms of CPU
  per audio second here, the resampler 1.0 (QUICK) and 1.5 (MEDIUM, its default) — on par, so it is chosen
  for what it does not do: no frame objects and no bytes copies per call, no internal buffering (output sample
  j is input sample 3j, whatever the chunking), and wake-word scores within about 0.01 of the resampler's.
- 24 kHz: `rtc.AudioResampler` (2:3 is not a plain decimation); it allocates a frame per call, a rare rate.

`delay` is the converter's group delay in pipeline samples: 16 kHz sample `j` of the output stream holds the
pipeline audio around pipeline sample `j * ratio - delay` (counted from the first sample fed).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.lib.stride_tricks import as_strided

TARGET_RATE = 16000
TAPS = 48  # 16 per polyphase branch: -60 dB above 10 kHz, flat to 6 kHz (the wake-word features reach 7.5 kHz)
CUTOFF_HZ = 7600.0
KAISER_BETA = 7.0


class Downsampler:
    """Whole 10 ms frames at `rate` in, 16 kHz int16 out."""

    def __init__(self, rate: int, max_block: int) -> None:
        if rate % 100:
            raise ValueError(f"sample rate {rate} has no whole 10 ms frame")
        self.rate = rate
        self.ratio = rate / TARGET_RATE
        self.delay = 0.0
        self._out = np.zeros(max(1, max_block * TARGET_RATE // rate + TARGET_RATE // 100), dtype=np.int16)
        self._mode = "same" if rate == TARGET_RATE else "decimate3" if rate == 3 * TARGET_RATE else "resampler"
        if self._mode == "decimate3":
            self._taps = _lowpass(TAPS, CUTOFF_HZ / (rate / 2))[::-1].astype(np.float32).copy()  # as a correlation
            keep = TAPS - 3
            self._keep = keep
            self._hist = np.zeros(keep + max_block, dtype=np.float32)  # the filter's memory, then this block
            self._acc = np.zeros(self._out.shape[0], dtype=np.float32)
            # Output j's filter is centred (TAPS-1)/2 samples into a window that starts `keep` samples back.
            self.delay = keep - (TAPS - 1) / 2
        elif self._mode == "resampler":
            from livekit import rtc

            self._resampler = rtc.AudioResampler(rate, TARGET_RATE, num_channels=1)
            self._pending = 0

    def process(self, block: np.ndarray) -> np.ndarray:
        """16 kHz samples for `block` (int16 mono, whole 10 ms frames at `rate`): a view, valid until the next
        call. The 24 kHz path may return fewer or more samples than `len(block) / ratio` (the resampler buffers)."""
        if self._mode == "same":
            return block
        if self._mode == "decimate3":
            return self._decimate(block)
        return self._resample(block)

    def reset(self) -> None:
        """Forget the history (after a gap in the audio: the filter must not join two unrelated stretches)."""
        if self._mode == "decimate3":
            self._hist[: self._keep] = 0.0
        elif self._mode == "resampler":
            from livekit import rtc

            self._resampler = rtc.AudioResampler(self.rate, TARGET_RATE, num_channels=1)

    def _decimate(self, block: np.ndarray) -> np.ndarray:
        n_in = block.shape[0]
        n = n_in // 3
        keep = self._keep
        if keep + n_in > self._hist.shape[0]:
            raise ValueError(f"block of {n_in} samples is longer than this downsampler's {self._hist.shape[0] - keep}")
        hist = self._hist
        hist[keep : keep + n_in] = block
        # Row k is the filter's window for output k: input samples 3k .. 3k+TAPS-1 (a strided view, no copy).
        step = hist.strides[0]
        windows = as_strided(hist, shape=(n, TAPS), strides=(3 * step, step), writeable=False)
        acc = self._acc[:n]
        np.matmul(windows, self._taps, out=acc)
        hist[:keep] = hist[n_in : n_in + keep]  # the newest TAPS-3 samples are the next block's history
        out = self._out[:n]
        np.clip(acc, -32768, 32767, out=acc)
        np.rint(acc, out=out, casting="unsafe")
        return out

    def _resample(self, block: np.ndarray) -> np.ndarray:
        frames = self._resampler.push(bytearray(block.tobytes()))
        n = 0
        for frame in frames:
            data = np.frombuffer(frame.data, dtype=np.int16)
            if n + data.shape[0] > self._out.shape[0]:
                self._out = np.concatenate([self._out, np.zeros(data.shape[0] * 2, dtype=np.int16)])
            self._out[n : n + data.shape[0]] = data
            n += data.shape[0]
        return self._out[:n]


def _lowpass(taps: int, cutoff: float) -> np.ndarray:
    """Windowed-sinc low-pass, `cutoff` as a fraction of Nyquist, unity gain at DC."""
    n = np.arange(taps) - (taps - 1) / 2
    h: np.ndarray = cutoff * np.sinc(cutoff * n) * np.kaiser(taps, KAISER_BETA)
    unity: np.ndarray = h / h.sum()
    return unity


class Frames16k:
    """Pipeline chunks (ring index + whole 10 ms frames) → 10 ms frames at 16 kHz, and back to ring indices.

    `frames()` yields views of 160 samples; while a frame is out, `position` is the 16 kHz sample count at its
    end. `ring_index(p)` maps a 16 kHz position to the ring index of the pipeline audio there. A chunk that does
    not start where the previous one ended (the consumer fell behind and the reader skipped) re-anchors the
    mapping and resets the filter; `gaps` counts those."""

    FRAME = TARGET_RATE // 100

    def __init__(self, rate: int, max_chunk_ms: int = 200) -> None:
        self._down = Downsampler(rate, rate * max_chunk_ms // 1000)
        self._pending = np.zeros(self.FRAME, dtype=np.int16)  # 16 kHz samples short of a whole frame
        self._npending = 0
        self.position = 0  # 16 kHz samples handed out as whole frames
        self._anchor_index = 0  # ring index of 16 kHz position `_anchor_16k`
        self._anchor_16k = 0
        self._next_index: int | None = None
        self.gaps = 0

    def frames(self, first_index: int, samples: np.ndarray) -> Iterator[np.ndarray]:
        if self._next_index is None or first_index != self._next_index:
            if self._next_index is not None:
                self.gaps += 1
                self._down.reset()
            self._anchor_index, self._anchor_16k = first_index, self.position + self._npending
        self._next_index = first_index + samples.shape[0]
        pcm = self._down.process(samples)
        frame = self.FRAME
        i, n = 0, pcm.shape[0]
        if self._npending:
            take = min(frame - self._npending, n)
            self._pending[self._npending : self._npending + take] = pcm[:take]
            self._npending += take
            i = take
            if self._npending == frame:
                self._npending = 0
                self.position += frame
                yield self._pending
        while i + frame <= n:
            self.position += frame
            yield pcm[i : i + frame]
            i += frame
        if i < n:
            self._pending[: n - i] = pcm[i:]
            self._npending = n - i

    def ring_index(self, position: int) -> int:
        """Ring index of 16 kHz position `position`; never before the last gap (the audio there is not ours)."""
        down = self._down
        return max(self._anchor_index,
                   self._anchor_index + round((position - self._anchor_16k) * down.ratio - down.delay))

    def reset(self) -> None:
        self._down.reset()
        self._npending = 0
        self._next_index = None
