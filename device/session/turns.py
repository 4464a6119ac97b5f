"""Push-to-talk turns: the agent's `start_turn` / `end_turn` / `cancel_turn` RPCs (names from config).

An agent built for manual turns registers these methods; one that is not answers "unsupported method"
(RpcError 1400). Then the device falls back to the agent's own turn detection: it says so ONCE in the log and
stops calling. Calls made before the agent is ready wait in order and go out when it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from device.config.schema import TurnsConfig

if TYPE_CHECKING:
    from livekit import rtc

log = logging.getLogger("device.session.turns")

UNSUPPORTED_METHOD = 1400


class Turns:
    def __init__(self, cfg: TurnsConfig, *, enabled: bool):
        self.cfg = cfg
        self.enabled = enabled and cfg.use_rpc
        self.supported = True  # until the agent says otherwise
        self.pending: list[str] = []
        self.calls: list[str] = []  # methods actually called (status, tests)
        self.on_sent: Callable[[str], None] | None = None  # after each call ("start" | "end" | "cancel") returned

    def method(self, which: str) -> str:
        return {"start": self.cfg.start_method, "end": self.cfg.end_method, "cancel": self.cfg.cancel_method}[which]

    @property
    def active(self) -> bool:
        return self.enabled and self.supported

    def queue(self, which: str) -> None:
        if self.active:
            self.pending.append(which)

    def reset(self) -> None:
        """A new session: nothing pending, support unknown."""
        self.pending.clear()
        self.supported = True

    def new_agent(self) -> None:
        """A (new) agent joined: its support is unknown; a press made before it came still goes to it."""
        self.supported = True

    async def flush(self, local_participant: rtc.LocalParticipant, agent: str) -> None:
        """Send the queued calls in order (the caller checked that the agent is ready)."""
        while self.pending and self.active:
            which = self.pending.pop(0)
            await self._call(local_participant, agent, self.method(which))
            if self.on_sent is not None:
                self.on_sent(which)

    async def _call(self, local_participant: rtc.LocalParticipant, agent: str, method: str) -> None:
        try:
            await local_participant.perform_rpc(destination_identity=agent, method=method, payload="")
            self.calls.append(method)
        except Exception as e:
            code = getattr(e, "code", None)
            if code == UNSUPPORTED_METHOD:
                self.supported = False
                self.pending.clear()
                log.info("turns fallback: agent %s has no %s method; using the agent's own turn detection",
                         agent, method)
            else:
                log.warning("turn rpc failed method=%s agent=%s error=%s", method, agent, e)
