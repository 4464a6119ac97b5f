"""What the daemon counts about conversations, over its whole life (reloads included): how many each trigger
started (the wake word, the button, a command), how they ended (`ENDED_BY`), the dropped connections that came back,
the wake-word ones in which nobody spoke after the wake phrase
(likely false wakes: the policy's `SessionEnded.heard_user`), and how long it took from the trigger to the agent
listening — the wake word's detection or the press, to the first `listening` of that session.

It watches the device machine's inputs and effects as `App.feed` passes them (the session numbers of
`StartSession` and of the supervisor's reports tie them together), so the latency starts the moment the machine
asks for the session, in the same tick as the detection or the press.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from types import MappingProxyType

from device.core.vocabulary import (
    AgentStateChanged,
    EndReason,
    Event,
    SessionEnded,
    SessionFailed,
    SessionReconnected,
    StartSession,
    Trigger,
)
from device.daemon.status import ConversationStatus, Latency

KEEP = 32  # latencies kept per kind
FAILED = "failed"  # a conversation whose session failed for good (no retry): its reason is in the failure counts
OTHER = "other"  # an end reason none of these names (kept bounded: the counts become Prometheus labels)
# why a conversation ended: the session's own reasons, the device's ends (controls/machine.py's long press,
# daemon/commands.py's `ctl end`), a failure given up on
ENDED_BY: tuple[str, ...] = (*EndReason, "button", "control", FAILED, OTHER)


class ConversationStats:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started: Counter[str] = Counter()
        self._ended: Counter[str] = Counter()
        self._resumed = 0
        self._measured: Counter[Trigger] = Counter()  # latencies measured in all, per trigger
        self._open: dict[int, tuple[Trigger, float | None]] = {}  # session → (trigger, asked at; None once listening)
        self._wake_silent = 0
        self._latencies: dict[Trigger, deque[float]] = {t: deque(maxlen=KEEP) for t in Trigger}

    def started(self, effect: StartSession) -> None:
        self._started[str(effect.trigger)] += 1
        self._open[effect.session] = (effect.trigger, self._clock())
        for old in [n for n in self._open if n < effect.session - KEEP]:  # sessions whose end was never reported
            del self._open[old]

    def observe(self, event: Event) -> None:
        match event:
            case AgentStateChanged(state="listening", session=int(n)) if n in self._open:
                trigger, asked = self._open[n]
                if asked is not None:
                    self._latencies[trigger].append((self._clock() - asked) * 1000.0)
                    self._measured[trigger] += 1
                    self._open[n] = (trigger, None)
            case SessionEnded(session=int(n), reason=reason, heard_user=heard) if n in self._open:
                trigger, _ = self._open.pop(n)
                self._ended[str(reason) if reason in ENDED_BY else OTHER] += 1
                if trigger is Trigger.WAKE_WORD and heard is False:
                    self._wake_silent += 1
            case SessionFailed(session=int(n), retry_in_s=None) if n in self._open:
                del self._open[n]
                self._ended[FAILED] += 1
            case SessionReconnected(session=int(n)) if n in self._open:
                self._resumed += 1

    def status(self) -> ConversationStatus:
        return ConversationStatus(
            started=MappingProxyType(dict(self._started)),
            ended=MappingProxyType(dict(self._ended)),
            resumed=self._resumed,
            wake_without_speech=self._wake_silent,
            wake_to_listening=latency(self._latencies[Trigger.WAKE_WORD], self._measured[Trigger.WAKE_WORD]),
            press_to_listening=latency(self._latencies[Trigger.BUTTON], self._measured[Trigger.BUTTON]),
        )


def latency(values: Sequence[float], total: int | None = None) -> Latency:
    """The distribution of `values` (oldest first), in whole ms; `total`: how many were measured in all (default:
    as many as there are values)."""
    total = len(values) if total is None else total
    if not values:
        return Latency(total=total)
    ordered = sorted(values)
    return Latency(count=len(ordered), p50_ms=round(_quantile(ordered, 0.5)), p90_ms=round(_quantile(ordered, 0.9)),
                   max_ms=round(ordered[-1]), last_ms=round(values[-1]), total=total)


def _quantile(ordered: list[float], q: float) -> float:
    """The nearest-rank quantile of sorted values."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
