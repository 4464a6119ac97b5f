"""The state machine's own timers on the asyncio loop: ArmTimer / CancelTimer effects in, TimerFired events out.

One timer per name (`core/timers.py`): arming a name again replaces it, so a late TimerFired can only come from
the newest arming.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from device.core.timers import Fired, NamedTimers
from device.core.vocabulary import ArmTimer, CancelTimer, Effect, Event, TimerFired


class LoopTimers:
    def __init__(self, loop: asyncio.AbstractEventLoop, feed: Callable[[Event], None]) -> None:
        self._feed = feed
        self._timers: NamedTimers[str] = NamedTimers(loop.call_later, self._fire)

    def apply(self, effect: Effect) -> bool:
        """Carry out a timer effect; False when the effect is not about timers (the caller handles it)."""
        match effect:
            case ArmTimer(name=name, delay_s=delay):
                self._timers.arm(name, delay)
            case CancelTimer(name=name):
                self._timers.cancel(name)
            case _:
                return False
        return True

    def cancel(self, name: str) -> None:
        self._timers.cancel(name)

    @property
    def armed(self) -> frozenset[str]:
        return self._timers.armed

    def _fire(self, fired: Fired[str]) -> None:
        if self._timers.take(fired):
            self._feed(TimerFired(fired.name))

    def close(self) -> None:
        self._timers.close()
