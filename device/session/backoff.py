"""Full-jitter exponential backoff: the delay before retry n is uniform in [0, min(cap, base * 2**n)].

`attempts` is the number of consecutive failed attempts after which the supervisor gives up (0 = never);
the RNG is injectable so tests see exact delays.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, base_s: float, cap_s: float, attempts: int, rng: random.Random | None = None):
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempts = attempts
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float | None:
        """Record one failed attempt; the delay before the next one, or None when the budget is spent."""
        self.failures += 1
        if self.attempts and self.failures >= self.attempts:
            return None
        # min() keeps 2**n finite when retrying forever
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.failures - 1, 60))
        return self._rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.failures = 0
