"""The only door to livekit's AudioProcessingModule: whole 10 ms frames, by construction.

The SDK aborts the whole process (a native panic, not an exception) on a frame that is not a multiple of
10 ms, and it sizes the frame from the length of the frame's buffer, not from `samples_per_channel`. So the
APM only ever sees `rtc.AudioFrame`s built here, once, over preallocated buffers of exactly k × 10 ms
(k = 1..max_frames); `process()` refuses any block that is not a whole number of 10 ms frames with a
ValueError before anything reaches the SDK. The SDK splits a k × 10 ms frame into 10 ms chunks itself
(checked: identical output to k single calls), so one FFI call covers one PortAudio block (CPU: the
per-call cost dominates the DSP).
"""

from __future__ import annotations

import numpy as np


class FrameSizeError(ValueError):
    """A block handed to the APM that is not a whole number of 10 ms frames."""


class _FrameSet:
    """Preallocated AudioFrames of 1..max_frames × 10 ms over one buffer, for one sample rate."""

    def __init__(self, rate: int, max_frames: int) -> None:
        from livekit import rtc

        if rate % 100:
            raise ValueError(f"sample rate {rate} has no whole 10 ms frame")
        self.rate = rate
        self.frame = rate // 100
        self.max_frames = max_frames
        self._bytes = bytearray(max_frames * self.frame * 2)
        self.samples = np.frombuffer(self._bytes, dtype=np.int16)
        whole = memoryview(self._bytes)
        self.frames = [
            rtc.AudioFrame(whole[: k * self.frame * 2], rate, 1, k * self.frame) for k in range(1, max_frames + 1)
        ]


class FrameProcessor:
    """Echo cancellation, noise suppression, AGC and high-pass on int16 mono blocks of whole 10 ms frames."""

    def __init__(
        self,
        rate: int,
        *,
        echo_cancellation: bool,
        noise_suppression: bool,
        high_pass_filter: bool,
        auto_gain_control: bool,
        max_frames: int = 4,
    ) -> None:
        if rate % 100:
            raise ValueError(f"sample rate {rate} has no whole 10 ms frame")
        self.rate = rate
        self.frame = rate // 100
        self.echo_cancellation = echo_cancellation
        self._apm = None
        self._near: _FrameSet | None = None
        self._far: _FrameSet | None = None
        self._max_frames = max_frames
        if echo_cancellation or noise_suppression or high_pass_filter or auto_gain_control:
            from livekit import rtc

            self._apm = rtc.AudioProcessingModule(
                echo_cancellation=echo_cancellation,
                noise_suppression=noise_suppression,
                high_pass_filter=high_pass_filter,
                auto_gain_control=auto_gain_control,
            )
            self._near = _FrameSet(rate, max_frames)

    @property
    def active(self) -> bool:
        return self._apm is not None

    def process(self, block: np.ndarray) -> None:
        """Run the near-end (microphone) stream over `block` in place."""
        near = self._near
        if near is None:
            _check(block, self.frame)
            return
        self._run(near, block, reverse=False)

    def process_reverse(self, block: np.ndarray, rate: int) -> None:
        """Feed the far end (what the speaker actually played, at `rate`) to the echo canceller."""
        if self._apm is None or not self.echo_cancellation:
            return
        far = self._far
        if far is None or far.rate != rate:
            far = self._far = _FrameSet(rate, self._max_frames)
        self._run(far, block, reverse=True)

    def set_stream_delay_ms(self, delay_ms: int) -> None:
        if self._apm is not None and self.echo_cancellation:
            self._apm.set_stream_delay_ms(max(0, int(delay_ms)))

    def _run(self, fs: _FrameSet, block: np.ndarray, *, reverse: bool) -> None:
        frames = _check(block, fs.frame)
        call = self._apm.process_reverse_stream if reverse else self._apm.process_stream  # type: ignore[union-attr]
        off = 0
        while frames:
            k = min(frames, fs.max_frames)
            n = k * fs.frame
            fs.samples[:n] = block[off : off + n]
            call(fs.frames[k - 1])
            if not reverse:
                block[off : off + n] = fs.samples[:n]
            off += n
            frames -= k


def _check(block: np.ndarray, frame: int) -> int:
    if block.dtype != np.int16 or block.ndim != 1:
        raise FrameSizeError(f"the APM takes int16 mono, got {block.dtype} with shape {block.shape}")
    n = block.shape[0]
    if n == 0 or n % frame:
        raise FrameSizeError(f"the APM takes whole 10 ms frames ({frame} samples), got {n}")
    return n // frame
