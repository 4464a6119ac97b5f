"""The microphone stream: a PyAudio input stream in callback mode writing into the raw ring.

The hot path is `_callback`, run by PortAudio's thread once per block (default 20 ms). Budget and rules:
- it copies the block into the preallocated raw ring (one memcpy through a prebuilt slice: the block size
  is fixed, so the ring is a whole number of block slots), stamps the block's ADC time into a preallocated
  array, counts overflows and wakes the loop through an eventfd — every block while something is live, every
  `wake_every` blocks (about 100 ms) while the device is idle (`pump.py`);
- it allocates no sample buffer, takes no lock, logs nothing and never calls into asyncio or the SDK;
- its cost is dominated by PortAudio's own Python call (≈ 20–40 µs); the copy of 1,920 bytes is noise.
What the callback stores, the pump (on the loop thread) reads; `Ring`'s reserve/commit protocol makes a read
that races an overwrite detectable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np

from device.audio.devices import PaStream
from device.audio.ring import Ring

PA_INPUT_OVERFLOW = 0x2  # paInputOverflow in the callback's status flags
PA_CONTINUE = 0


class Capture:
    """One open input stream and the raw ring it fills (device rate, int16 mono)."""

    def __init__(self, rate: int, block: int, ring_blocks: int, wake: Callable[[], None]) -> None:
        self.rate = rate
        self.block = block  # samples per callback, at the device rate
        self.ring = Ring(block * ring_blocks)
        self._mv = memoryview(self.ring._buf.data).cast("B")
        nbytes = block * 2
        # Prebuilt slice objects, one per slot: the callback indexes them instead of computing offsets.
        self._slots = tuple(slice(i * nbytes, (i + 1) * nbytes) for i in range(ring_blocks))
        self._next = tuple((i + 1) % ring_blocks for i in range(ring_blocks))
        self._slot = 0
        self.block_adc = np.zeros(ring_blocks, dtype=np.float64)  # monotonic ADC time of each slot's block
        self._wake = wake
        self.wake_every = 1  # blocks per wake-up of the loop (the pump sets more while nothing is live)
        self._unwoken = 0
        self._result = (None, PA_CONTINUE)
        self.stream: PaStream = None
        self.callbacks = 0
        self.input_overflows = 0
        self.short_blocks = 0  # callbacks whose size was not the block size (dropped; should never happen)
        self.last_capture_monotonic = 0.0

    def callback(self, in_data: bytes | None, frame_count: int, time_info: Mapping[str, float], status: int
                 ) -> tuple[None, int]:
        """PortAudio's input callback: copy, stamp, count, wake. See the module docstring for the rules."""
        now = time.monotonic()
        if status & PA_INPUT_OVERFLOW:
            self.input_overflows += 1
        if in_data is None or frame_count != self.block:
            self.short_blocks += 1
            return self._result
        ring = self.ring
        slot = self._slot
        ring._reserved = ring.total + frame_count
        self._mv[self._slots[slot]] = in_data
        # PortAudio's clock is not time.monotonic(): carry the ADC time over as "this long before now".
        self.block_adc[slot] = now - (time_info["current_time"] - time_info["input_buffer_adc_time"])
        ring.total = ring._reserved
        self._slot = self._next[slot]
        self.callbacks += 1
        self.last_capture_monotonic = now
        self._unwoken += 1
        if self._unwoken >= self.wake_every:
            self._unwoken = 0
            self._wake()
        return self._result

    def adc_time(self, index: int) -> float:
        """Monotonic ADC time of raw sample `index` (still in the ring), from its block's stamp."""
        block_no, within = divmod(index, self.block)
        return float(self.block_adc[block_no % len(self._slots)]) + within / self.rate
