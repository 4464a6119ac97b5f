"""Token buckets keyed by device id or client address (pure: the clock is given).

A bucket holds up to `burst` tokens and gains `per_minute` a minute; a request takes one. When none is left the
answer is how long until one is (the Retry-After). Buckets live in this process: N instances behind a load
balancer allow up to N times the configured rate, which still bounds a runaway device or a guessing client.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from voice_device_tokens.config import Bucket

MAX_KEYS = 100_000  # beyond this, buckets that have refilled (and so hold nothing worth keeping) are dropped


@dataclass
class _State:
    tokens: float
    at: float


class Limiter:
    def __init__(self, spec: Bucket, clock: Callable[[], float]):
        self.spec = spec
        self._clock = clock
        self._rate = spec.per_minute / 60.0
        self._buckets: dict[str, _State] = {}

    def _state(self, key: str) -> _State:
        now = self._clock()
        state = self._buckets.get(key)
        if state is None:
            if len(self._buckets) >= MAX_KEYS:
                self._forget_full(now)
            state = self._buckets[key] = _State(float(self.spec.burst), now)
        state.tokens = min(float(self.spec.burst), state.tokens + (now - state.at) * self._rate)
        state.at = now
        return state

    def _forget_full(self, now: float) -> None:
        for key, state in list(self._buckets.items()):
            if state.tokens + (now - state.at) * self._rate >= self.spec.burst:
                del self._buckets[key]

    def wait_s(self, key: str) -> int:
        """Seconds until `key` may make a request (0: now), taking nothing."""
        state = self._state(key)
        return 0 if state.tokens >= 1.0 else max(1, math.ceil((1.0 - state.tokens) / self._rate))

    def take(self, key: str) -> int:
        """Take one token for `key`; 0 when taken, else the seconds until one is there (nothing taken)."""
        wait = self.wait_s(key)
        if wait == 0:
            self._buckets[key].tokens -= 1.0
        return wait
