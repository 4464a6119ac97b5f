"""Push-to-talk turns: the agent's `start_turn` / `end_turn` / `cancel_turn` RPCs (names from config).

An agent built for manual turns registers these methods; one that is not answers "unsupported method"
(RpcError 1400). Then the device falls back to the agent's own turn detection: it says so ONCE in the log and
stops calling. Calls made before the agent is ready wait in order and go out when it is.

`start_pending` is true from the moment a start is queued until the agent has answered it (or the call failed,
or the queue was dropped): until then the agent's audio input is off, so the uplink keeps the pre-connect stream
open (`routing.Facts.turn_pending`); `on_start_pending` is told of every change.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from device.config.schema import TurnsConfig

if TYPE_CHECKING:
    from livekit import rtc

log = logging.getLogger("device.session.turns")

UNSUPPORTED_METHOD = 1400


class Turns:
    def __init__(self, cfg: TurnsConfig, *, enabled: bool, on_start_pending: Callable[[bool], None] | None = None):
        self.cfg = cfg
        self.enabled = enabled and cfg.use_rpc
        self.supported = True  # until the agent says otherwise
        self.pending: list[str] = []
        self.calls: list[str] = []  # methods actually called (status, tests)
        self.on_start_pending = on_start_pending
        self._start_pending = False

    @property
    def start_pending(self) -> bool:
        return self._start_pending

    def _set_start_pending(self, pending: bool) -> None:
        if pending != self._start_pending:
            self._start_pending = pending
            if self.on_start_pending is not None:
                self.on_start_pending(pending)

    def method(self, which: str) -> str:
        return {"start": self.cfg.start_method, "end": self.cfg.end_method, "cancel": self.cfg.cancel_method}[which]

    @property
    def active(self) -> bool:
        return self.enabled and self.supported

    def queue(self, which: str) -> None:
        if self.active:
            self.pending.append(which)
            if which == "start":
                self._set_start_pending(True)

    def reset(self) -> None:
        """A new session: nothing pending, support unknown."""
        self.pending.clear()
        self.supported = True
        self._set_start_pending(False)

    def new_agent(self) -> None:
        """A (new) agent joined: its support is unknown; a press made before it came still goes to it."""
        self.supported = True

    async def flush(self, local_participant: rtc.LocalParticipant, agent: str,
                    before_end: Callable[[], Awaitable[None]] | None = None) -> None:
        """Send the queued calls in order (the caller checked that the agent is ready); `before_end` is awaited
        before an end goes out (the uplink's pre-connect stream delivered: the end turns the agent's input off)."""
        while self.pending and self.active:
            which = self.pending.pop(0)
            if which == "end" and before_end is not None:
                await before_end()
            await self._call(local_participant, agent, self.method(which))
            if which == "start" and "start" not in self.pending:
                self._set_start_pending(False)  # answered (or failed): the agent's input is as it will be
        if not self.active:
            self._set_start_pending(False)

    async def _call(self, local_participant: rtc.LocalParticipant, agent: str, method: str) -> None:
        try:
            await local_participant.perform_rpc(destination_identity=agent, method=method, payload="")
            self.calls.append(method)
        except Exception as e:
            code = getattr(e, "code", None)
            if code == UNSUPPORTED_METHOD:
                self.supported = False
                self.pending.clear()
                self._set_start_pending(False)
                log.info("turns fallback: agent %s has no %s method; using the agent's own turn detection",
                         agent, method)
            else:
                log.warning("turn rpc failed method=%s agent=%s error=%s", method, agent, e)
