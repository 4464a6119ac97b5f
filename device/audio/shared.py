"""The processed ring in shared memory: the daemon writes it, a session process reads it — no samples on a socket.

The pump's ring (`SharedRing`, a `Ring`) lives in a memfd: a 64-byte header (capacity, total, reserved as
int64) followed by the int16 samples. A session process maps the same memfd read-only (`RingView`) and reads
the microphone from it by index; the socket between the two carries only indices (`session/process/remote.py`).

Ordering, on weakly ordered CPUs too: the writer copies the samples, then publishes `total`; a reader only reads
below an end index it received over a socket after the writer wrote it — the send and the receive are system
calls whose socket queue orders the writer's stores before the reader's loads. The header's `reserved` (how far
the writer is about to write) makes an overwrite detectable, as in `Ring`: a reader a whole ring (seconds)
behind finds its samples gone and says so instead of reading torn audio.
"""

from __future__ import annotations

import mmap
import os
import weakref

import numpy as np

from device.audio.ring import Overrun, Ring

HEADER_BYTES = 64
_CAPACITY, _TOTAL, _RESERVED = 0, 1, 2


class SharedRing(Ring):
    """A `Ring` whose samples and indices live in a memfd (`fd`) that other processes can map."""

    def __init__(self, capacity_samples: int, name: str = "voice-device-ring") -> None:
        if capacity_samples <= 0:
            raise ValueError("ring capacity must be positive")
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        self._closer = weakref.finalize(self, os.close, self.fd)  # an engine rebuilt by a reload leaks no fd
        size = HEADER_BYTES + 2 * int(capacity_samples)
        os.ftruncate(self.fd, size)
        self._map = mmap.mmap(self.fd, size)
        self._header = np.frombuffer(self._map, dtype=np.int64, count=3)
        self._header[_CAPACITY] = capacity_samples
        super().__init__(capacity_samples, buffer=np.frombuffer(self._map, dtype=np.int16, offset=HEADER_BYTES))

    def write(self, samples: np.ndarray) -> None:
        n = min(int(samples.shape[0]), self.capacity)
        skipped = max(0, int(samples.shape[0]) - self.capacity)
        self._header[_RESERVED] = self.total + skipped + n  # before the copy: a reader checks it after its own
        super().write(samples)
        self._header[_TOTAL] = self.total

    def close(self) -> None:
        self._closer()


class RingView:
    """A read-only view of a `SharedRing` from another process (its memfd passed as `fd`)."""

    def __init__(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        self._map = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        os.close(fd)
        self._header = np.frombuffer(self._map, dtype=np.int64, count=3)
        self.capacity = int(self._header[_CAPACITY])
        self._buf = np.frombuffer(self._map, dtype=np.int16, offset=HEADER_BYTES, count=self.capacity)

    def oldest(self, total: int) -> int:
        return max(0, total - self.capacity)

    def read(self, start: int, end: int) -> np.ndarray:
        """A copy of samples [start, end) (`end` as received from the writer). Raises `Overrun` if any of them
        were overwritten before or during the copy."""
        if start < end - self.capacity:
            raise Overrun(start, end - self.capacity)
        out = np.empty(end - start, dtype=np.int16)
        pos = start % self.capacity
        first = min(end - start, self.capacity - pos)
        out[:first] = self._buf[pos : pos + first]
        out[first:] = self._buf[: end - start - first]
        safe_from = int(self._header[_RESERVED]) - self.capacity
        if start < safe_from:
            raise Overrun(start, safe_from)
        return out
