"""FrameReader: one consumer's cursor over the processed ring — history first, then live, never a silent gap.

A reader starts at any index the ring still holds (a mark `preroll_ms` before a press), delivers everything
from there as fast as it is asked, then follows the pump. Each chunk is a whole number of 10 ms frames and
starts where the previous one ended; if the consumer falls so far behind that the ring overwrote its next
samples, the chunk jumps forward, the jump shows in `first_index`, and `dropped` counts the samples lost.
When the engine stops, iteration ends after the last sample captured.
Chunks batch every frame available at a wake-up (up to `max_chunk_ms`), so a consumer costs one await per
PortAudio block, not one per 10 ms. A consumer that is done with each chunk before asking for the next (the
wake-word detector, a level meter) can pass `reuse=True`: chunks are then views of one preallocated buffer,
overwritten by the next chunk, and following the mic allocates no sample buffers at all.
"""

from __future__ import annotations

import numpy as np

from device.audio.pump import Pump
from device.audio.ring import Overrun


class FrameReader:
    def __init__(self, pump: Pump, start_index: int, max_chunk_ms: int = 200, *, reuse: bool = False,
                 live: bool = True) -> None:
        """`live`: a session's mic — the echo canceller runs and the loop wakes every block while it is open, and
        the ring from `start_index` on is processed if it was captured while idle (pump.py). A reader that is not
        live (the wake-word detector) reads the ring as it is, at the pace the pump runs."""
        self._pump = pump
        self._frame = pump.frame
        self.closed = False
        if live:
            pump.add_live_reader(self, int(start_index))
        start_index = max(pump.ring.oldest(), min(int(start_index), pump.ring.total))  # what is still kept
        self.position = start_index - start_index % self._frame  # next index to deliver
        self.dropped = 0  # samples overwritten before this reader got them
        self._max = max(1, max_chunk_ms // 10) * self._frame
        self._buffer = np.empty(self._max, dtype=np.int16) if reuse else None

    def __aiter__(self) -> FrameReader:
        return self

    async def __anext__(self) -> tuple[int, np.ndarray]:
        ring = self._pump.ring
        while not self.closed:
            avail = ring.total - self.position
            if avail >= self._frame:
                n = min(avail - avail % self._frame, self._max)
                out = np.empty(n, dtype=np.int16) if self._buffer is None else self._buffer[:n]
                try:
                    got = ring.read(self.position, out)
                except Overrun as e:
                    resume = e.oldest + (-e.oldest) % self._frame
                    self.dropped += resume - self.position
                    self.position = resume
                    continue
                first = self.position
                self.position += got
                return first, out[:got]
            if self._pump.closed:
                break
            await self._pump.wait_new()
        raise StopAsyncIteration

    async def advance(self) -> int:
        """What `__anext__` does without copying: wait for at least a frame more, take everything available and
        return the index it ends at (the samples below it can be read from the ring by another process)."""
        ring = self._pump.ring
        while not self.closed:
            avail = ring.total - self.position
            if avail >= self._frame:
                self.position += avail - avail % self._frame
                return self.position
            if self._pump.closed:
                break
            await self._pump.wait_new()
        raise StopAsyncIteration

    def head(self) -> int:
        """The ring index just past the newest processed sample (what this reader can reach now)."""
        return self._pump.ring.total

    def available(self) -> int:
        """Samples ready to be read without waiting."""
        return max(0, self._pump.ring.total - self.position)

    def close(self) -> None:
        """Stop iterating: a pending `__anext__` ends at the next wake-up of the pump."""
        self.closed = True
        self._pump.poke()
