"""The only door to livekit's AudioProcessingModule: whole 10 ms frames, by construction.

The SDK aborts the whole process (a native panic, not an exception) on a frame that is not a multiple of
10 ms, and it sizes the frame from the length of the frame's buffer, not from `samples_per_channel`. So the
APM only ever sees `rtc.AudioFrame`s built here, once, over preallocated buffers of exactly k × 10 ms
(k = `frames_per_call`, fixed per processor); `process()` refuses any block that is not a whole number of
such calls with a ValueError before anything reaches the SDK. The SDK splits a k × 10 ms frame into 10 ms
chunks itself (checked: identical output to k single calls), so one FFI call covers one PortAudio block
(CPU: the per-call cost dominates the DSP). The call size must never change: a call of another size gives
different output (measured: the SDK reconfigures its stream and loses state), so k is fixed at construction.
"""

from __future__ import annotations

import numpy as np


class FrameSizeError(ValueError):
    """A block handed to the APM that is not a whole number of 10 ms frames."""


class _FrameSet:
    """One preallocated AudioFrame of exactly k × 10 ms at one sample rate: the only shape the SDK sees."""

    def __init__(self, rate: int, frames_per_call: int) -> None:
        from livekit import rtc

        if rate % 100:
            raise ValueError(f"sample rate {rate} has no whole 10 ms frame")
        self.rate = rate
        self.call = frames_per_call * (rate // 100)  # samples per SDK call
        self._bytes = bytearray(self.call * 2)
        self.samples = np.frombuffer(self._bytes, dtype=np.int16)
        self.audio_frame = rtc.AudioFrame(self._bytes, rate, 1, self.call)


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
        frames_per_call: int = 2,
    ) -> None:
        if rate % 100:
            raise ValueError(f"sample rate {rate} has no whole 10 ms frame")
        self.rate = rate
        self.frame = rate // 100
        self.frames_per_call = frames_per_call
        self.call = frames_per_call * self.frame  # process() takes multiples of this many samples
        self.echo_cancellation = echo_cancellation
        self._apm = None
        self._near: _FrameSet | None = None
        self._far: _FrameSet | None = None
        if echo_cancellation or noise_suppression or high_pass_filter or auto_gain_control:
            from livekit import rtc

            self._apm = rtc.AudioProcessingModule(
                echo_cancellation=echo_cancellation,
                noise_suppression=noise_suppression,
                high_pass_filter=high_pass_filter,
                auto_gain_control=auto_gain_control,
            )
            self._near = _FrameSet(rate, frames_per_call)

    @property
    def active(self) -> bool:
        return self._apm is not None

    def process(self, block: np.ndarray) -> None:
        """Run the near-end (microphone) stream over `block` in place."""
        near = self._near
        if near is None:
            _check(block, self.call)
            return
        self._run(near, block, reverse=False)

    def process_reverse(self, block: np.ndarray, rate: int) -> None:
        """Feed the far end (what the speaker actually played, at `rate`) to the echo canceller; `block` is a
        whole number of `frames_per_call` × 10 ms at `rate`."""
        if self._apm is None or not self.echo_cancellation:
            return
        far = self._far
        if far is None or far.rate != rate:
            far = self._far = _FrameSet(rate, self.frames_per_call)
        self._run(far, block, reverse=True)

    def set_stream_delay_ms(self, delay_ms: int) -> None:
        if self._apm is not None and self.echo_cancellation:
            self._apm.set_stream_delay_ms(max(0, int(delay_ms)))

    def _run(self, fs: _FrameSet, block: np.ndarray, *, reverse: bool) -> None:
        calls = _check(block, fs.call)
        apm = self._apm
        assert apm is not None, "process() and process_reverse() return early without an APM"
        call = apm.process_reverse_stream if reverse else apm.process_stream
        n = fs.call
        for i in range(calls):
            fs.samples[:] = block[i * n : (i + 1) * n]
            call(fs.audio_frame)
            if not reverse:
                block[i * n : (i + 1) * n] = fs.samples


def _check(block: np.ndarray, call: int) -> int:
    if block.dtype != np.int16 or block.ndim != 1:
        raise FrameSizeError(f"the APM takes int16 mono, got {block.dtype} with shape {block.shape}")
    n = int(block.shape[0])
    if n == 0 or n % call:
        raise FrameSizeError(f"the APM takes whole {call}-sample calls (a multiple of 10 ms), got {n}")
    return n // call
