"""Exponential backoff, the one used everywhere something is retried (sessions, audio devices, session processes).

The delay before retry n (n = consecutive failures so far, from 1) is `min(cap, base * 2**(n-1))`; with
`jitter` (full jitter, the default, for anything that talks to a server many devices share) it is uniform in
[0, that]. `attempts` is the number of consecutive failures after which the caller gives up (0 = never); the
RNG is injectable so tests see exact delays.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, base_s: float, cap_s: float, attempts: int = 0, rng: random.Random | None = None, *,
                 jitter: bool = True) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempts = attempts
        self.jitter = jitter
        self.failures = 0
        self._rng = rng or random.Random()

    @property
    def ceiling(self) -> float:
        """The longest delay for the failures so far (0 before the first)."""
        if not self.failures:
            return 0.0
        # min() keeps 2**n finite when retrying forever
        return min(self.cap_s, self.base_s * 2.0 ** min(self.failures - 1, 60))

    def next_delay(self) -> float | None:
        """Record one failed attempt; the delay before the next one, or None when the budget is spent."""
        self.failures += 1
        if self.attempts and self.failures >= self.attempts:
            return None
        return self._rng.uniform(0.0, self.ceiling) if self.jitter else self.ceiling

    def reset(self) -> None:
        self.failures = 0
