"""The always_on restart policy (`Restarts`): nobody presses a smart speaker, so a session lost with its process is
started again, in a new one, after a back-off that grows while sessions keep being lost and starts over once one ends
normally; a start or an end meanwhile calls the restart off. Pure: fed what happens, it says when to start again; the
daemon's proxy (`remote.py`) arms the timer on the session clock and makes the start.
"""

from __future__ import annotations

from device.core.backoff import Backoff

RESTART_BASE_S, RESTART_CAP_S = 0.5, 30.0  # the same pace as a session process that keeps dying


class Restarts:
    def __init__(self, keeps_session: bool) -> None:
        self._keeps = keeps_session
        self._losses = Backoff(RESTART_BASE_S, RESTART_CAP_S, jitter=False)  # sessions lost since one ended normally
        self.pending = False

    def lost(self) -> float | None:
        """A session was lost with its process: the seconds after which it is started again (None: it is not)."""
        if not self._keeps:
            return None
        self.pending = True
        return self._losses.next_delay() or 0.0  # never None: no attempt limit

    def ended(self) -> None:
        """A session ended normally: the back-off starts over."""
        self._losses.reset()

    def call_off(self) -> bool:
        """A start or an end came first: no restart. Whether one was pending."""
        pending, self.pending = self.pending, False
        return pending

    def due(self) -> bool:
        """The delay `lost` gave has passed: whether to start the session now (not once it was called off)."""
        return self.call_off()
