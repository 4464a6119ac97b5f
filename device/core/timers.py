"""Named one-shot timers on any `call_later` (the asyncio loop's, or the session's clock): the one implementation
the device machine's timers (`controls/timers.py`) and the session's (`session/supervisor.py`) share.

One timer per name: arming a name again replaces it. A fire is `Fired(name, generation)`; `take` says whether it
is still the newest arming's, so a fire that was already queued when its timer was re-armed or cancelled is
recognised as stale and dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

N = TypeVar("N", bound=str)


class Handle(Protocol):
    def cancel(self) -> None: ...


@dataclass(frozen=True)
class Fired(Generic[N]):
    name: N
    generation: int


class NamedTimers(Generic[N]):
    def __init__(self, call_later: Callable[[float, Callable[[], None]], Handle],
                 fire: Callable[[Fired[N]], None]) -> None:
        self._call_later = call_later
        self._fire = fire
        self._handles: dict[N, Handle] = {}
        self._generation: Counter[N] = Counter()

    def arm(self, name: N, delay_s: float) -> None:
        self.cancel(name)
        fired = Fired(name, self._generation[name])
        self._handles[name] = self._call_later(delay_s, lambda: self._fire(fired))

    def cancel(self, name: N) -> None:
        self._generation[name] += 1  # a fire already queued is now stale
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.cancel()

    def take(self, fired: Fired[N]) -> bool:
        """True (and the timer is no longer armed) when `fired` comes from the newest arming of its name."""
        if self._generation[fired.name] != fired.generation or fired.name not in self._handles:
            return False
        del self._handles[fired.name]
        return True

    @property
    def armed(self) -> frozenset[N]:
        return frozenset(self._handles)

    def close(self) -> None:
        for name in list(self._handles):
            self.cancel(name)
