"""The ring: a preallocated int16 mono buffer addressed by a monotonic sample index.

One writer (the PortAudio callback for the raw ring, the pump for the processed ring) copies samples in; any
number of readers ask for "everything from sample N" and follow `total` as it grows. Indices never wrap:
sample `i` lives at `buf[i % capacity]` while `oldest() <= i < total`.

Thread safety without a lock: the writer publishes `_reserved` (how far it is about to write) BEFORE copying
and `total` AFTER. A reader copies, then re-reads `_reserved`; anything it copied from below
`_reserved - capacity` may have been overwritten mid-copy, so the read is rejected as an overrun. CPython
orders attribute stores, so this is a seqlock without the sequence number.

Overruns are never silent: a read that asks for samples already overwritten raises `Overrun` carrying the
index to resume from, and `overruns` / `overrun_samples` count every occurrence and every lost sample.
"""

from __future__ import annotations

import numpy as np


class Overrun(Exception):
    """The requested samples were overwritten before being read; resume from `oldest`."""

    def __init__(self, start: int, oldest: int) -> None:
        super().__init__(f"samples {start}..{oldest} were overwritten before being read")
        self.start = start
        self.oldest = oldest

    @property
    def lost(self) -> int:
        return self.oldest - self.start


class Ring:
    """Preallocated int16 mono ring; single writer; monotonic sample counter."""

    def __init__(self, capacity_samples: int, buffer: np.ndarray | None = None) -> None:
        """`buffer`: int16 storage of at least `capacity_samples` to use (shared memory), else one is allocated."""
        if capacity_samples <= 0:
            raise ValueError("ring capacity must be positive")
        self.capacity = int(capacity_samples)
        self._buf = np.zeros(self.capacity, dtype=np.int16) if buffer is None else buffer[: self.capacity]
        self.total = 0  # index of the next sample to be written
        self._reserved = 0  # total + the length of a write in progress
        self.overruns = 0  # reads that found their start overwritten
        self.overrun_samples = 0  # samples lost to those reads

    def oldest(self) -> int:
        """The oldest index still held (readable)."""
        return max(0, self.total - self.capacity)

    def write(self, samples: np.ndarray) -> None:
        """Copy `samples` (int16, 1-D) in. No allocation of sample buffers; never blocks."""
        n = samples.shape[0]
        total = self.total
        if n > self.capacity:  # only the newest `capacity` samples can be kept
            samples = samples[n - self.capacity :]
            total += n - self.capacity
            n = self.capacity
        self._reserved = total + n
        pos = total % self.capacity
        first = self.capacity - pos
        if n <= first:
            self._buf[pos : pos + n] = samples
        else:
            self._buf[pos:] = samples[:first]
            self._buf[: n - first] = samples[first:]
        self.total = total + n

    def overwrite(self, start: int, samples: np.ndarray) -> None:
        """Replace samples the ring holds from index `start` (the pump processing the pre-roll in place, before any
        live reader reads it); `total` does not move."""
        n = samples.shape[0]
        if start < self.oldest() or start + n > self.total:
            raise ValueError(f"samples {start}..{start + n} are not all in the ring ({self.oldest()}..{self.total})")
        pos = start % self.capacity
        first = min(n, self.capacity - pos)
        self._buf[pos : pos + first] = samples[:first]
        self._buf[: n - first] = samples[first:]

    def read(self, start: int, out: np.ndarray) -> int:
        """Copy from index `start` into `out`; returns how many samples were copied (0 if none yet).

        Raises `Overrun` (and counts it) when `start` is older than what the ring still holds, or when the
        writer overwrote the samples while they were being copied."""
        total = self.total
        if start > total:
            raise ValueError(f"index {start} is in the future (total {total})")
        oldest = total - self.capacity
        if start < oldest:
            self._count(start, oldest)
        n = min(int(out.shape[0]), total - start)
        if n <= 0:
            return 0
        pos = start % self.capacity
        first = self.capacity - pos
        if n <= first:
            out[:n] = self._buf[pos : pos + n]
        else:
            out[:first] = self._buf[pos:]
            out[first:n] = self._buf[: n - first]
        safe_from = self._reserved - self.capacity  # below this, the writer may have overwritten our copy
        if start < safe_from:
            self._count(start, safe_from)
        return n

    def _count(self, start: int, oldest: int) -> None:
        self.overruns += 1
        self.overrun_samples += oldest - start
        raise Overrun(start, oldest)
