"""The hub: the device's state as the outlets know it, and the one place a change goes out to every outlet.

The app calls `set_state(state, reason)` after every event, and `update()` after every effect and every
`STATUS_POLL_S` (what changes outside the event path: the session's transcripts and counts, the volume the agent
set). Each time the hub builds the `DeviceStatus` — the app's (`details`) stamped with the state, its reason and
since when — and, when something in it that matters moved (`news`), gives every outlet a `StatusChange`. It answers
the control server's snapshot requests with `snapshot()`. A failing outlet is logged and skipped: the status must
never take the daemon down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from device.daemon.outlets import StatusChange, StatusOutlet
from device.daemon.status import DeviceStatus, status_text

log = logging.getLogger("device.daemon.status")

STATUS_POLL_S = 1.0  # how often the app asks for what changed outside its event path


def news(status: DeviceStatus) -> tuple[object, ...]:
    """What of a status is news to the outlets: the state and its reason, mute, the volume, the transcripts, the
    session's and the conversations' counts, the session processes (a new one, counted, with its pid), the wake word,
    a reload. Not `since` (it follows the state) nor the audio counters, which move with every block."""
    s = status
    return (s.state, s.reason, s.detail, s.muted, s.volume, s.session.transcripts, s.session.metrics,
            s.session.process, s.conversations, s.wake, s.reloads, s.reload_error)


class StatusOutlets:
    def __init__(self, details: Callable[[], DeviceStatus] = DeviceStatus, clock: Callable[[], float] = time.time,
                 initial_state: str = "idle") -> None:
        self.details = details
        self.clock = clock
        self.state = initial_state
        self.reason: str | None = None
        self.since = clock()
        self._given = DeviceStatus(initial_state, since=self.since)  # what the outlets were given last
        self._attached: list[StatusOutlet] = []  # the daemon's own: for its life
        self._configured: list[StatusOutlet] = []  # from the configuration: replaced on a reload

    @property
    def text(self) -> str:
        """What systemd shows (STATUS=): the state and its reason, `failed: mic-unavailable`."""
        return status_text(self.state, self.reason)

    @property
    def outlets(self) -> tuple[StatusOutlet, ...]:
        return (*self._attached, *self._configured)

    def attach(self, outlet: StatusOutlet) -> None:
        """Give `outlet` every change from now on."""
        self._attached.append(outlet)

    def configure(self, outlets: Sequence[StatusOutlet]) -> None:
        """The outlets a (new) configuration asks for, in place of the previous configuration's (closed)."""
        old, self._configured = self._configured, list(outlets)
        for outlet in old:
            self._safely(outlet.close, outlet)

    def snapshot(self) -> DeviceStatus:
        return replace(self.details(), state=self.state, reason=self.reason, since=self.since)

    def set_state(self, state: str, reason: str | None = None) -> bool:
        """Stamp the device's state (and since when, if it moved), then `update`; True if the state or reason
        moved."""
        state = str(state)
        moved = (state, reason) != (self.state, self.reason)
        if moved:
            self.state, self.reason, self.since = state, reason, self.clock()
        self.update()
        return moved

    def update(self) -> None:
        """Give every outlet the status if something in it that matters moved since they were given one."""
        if not self.outlets:  # nobody to tell: nothing is built, only the state is kept for the first one
            self._given = replace(self._given, state=self.state, reason=self.reason, since=self.since)
            return
        status = self.snapshot()
        if news(status) == news(self._given):
            return
        change, self._given = StatusChange(status, self._given), status
        for outlet in self.outlets:
            self._safely(outlet.publish, outlet, change)

    def close(self) -> None:
        for outlet in self.outlets:
            self._safely(outlet.close, outlet)
        self._attached, self._configured = [], []

    @staticmethod
    def _safely(fn: Callable[..., object], outlet: StatusOutlet, *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("status outlet failed outlet=%s", type(outlet).__name__)
