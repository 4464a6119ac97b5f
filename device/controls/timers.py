"""The state machine's own timers on the asyncio loop: ArmTimer / CancelTimer effects in, TimerFired events out.

One timer per name: arming a name again replaces it, so a late TimerFired can only come from the newest arming.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from device.core.vocabulary import ArmTimer, CancelTimer, Effect, Event, TimerFired


class LoopTimers:
    def __init__(self, loop: asyncio.AbstractEventLoop, feed: Callable[[Event], None]) -> None:
        self._loop = loop
        self._feed = feed
        self._handles: dict[str, asyncio.TimerHandle] = {}

    def apply(self, effect: Effect) -> bool:
        """Carry out a timer effect; False when the effect is not about timers (the caller handles it)."""
        match effect:
            case ArmTimer(name=name, delay_s=delay):
                self.cancel(name)
                self._handles[name] = self._loop.call_later(delay, self._fire, name)
            case CancelTimer(name=name):
                self.cancel(name)
            case _:
                return False
        return True

    def cancel(self, name: str) -> None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.cancel()

    @property
    def armed(self) -> frozenset[str]:
        return frozenset(self._handles)

    def _fire(self, name: str) -> None:
        self._handles.pop(name, None)
        self._feed(TimerFired(name))

    def close(self) -> None:
        for name in list(self._handles):
            self.cancel(name)
