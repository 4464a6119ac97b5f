"""The one place the daemon's visible state goes out: systemd's STATUS=, control-socket clients, the status file.

The app calls `board.set_state(state, reason)` on every change of the device state; the board forwards it,
once, to every outlet, and answers the control server's snapshot requests with the state, the reason and the
app's metrics. A failing outlet is logged and skipped: the status must never take the daemon down.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from device.daemon.control import Snapshot

log = logging.getLogger("device.daemon.status")

Listener = Callable[[str, str | None], None]


def status_text(state: str, reason: str | None) -> str:
    """What `systemctl status` shows: `listening`, or `failed: auth`."""
    return f"{state}: {reason}" if reason else state


def write_status_file(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    """Replace `path` atomically (write a sibling, then rename): a reader never sees half a file."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, default=str)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StatusBoard:
    def __init__(
        self,
        notify_status: Callable[[str], object] | None = None,
        status_file: str | None = None,
        metrics: Callable[[], Mapping[str, Any]] = dict,
        transcripts: Callable[[], Sequence[Mapping[str, str]]] = tuple,
        clock: Callable[[], float] = time.time,
        initial_state: str = "idle",
    ):
        self.notify_status = notify_status
        self.status_file = status_file
        self.metrics = metrics
        self.transcripts = transcripts
        self.clock = clock
        self.state = initial_state
        self.reason: str | None = None
        self.since = clock()
        self._listeners: list[Listener] = []
        self._file_failing = False

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(state, reason)` on every change (e.g. `control_server.publish_state`)."""
        self._listeners.append(listener)

    def snapshot(self) -> Snapshot:
        return Snapshot(self.state, self.reason, dict(self.metrics()), tuple(self.transcripts()))

    def set_state(self, state: str, reason: str | None = None) -> bool:
        """Publish a change; False (and nothing sent) if the state and reason are what they already were."""
        state = str(state)
        if (state, reason) == (self.state, self.reason):
            return False
        self.state, self.reason, self.since = state, reason, self.clock()
        self.publish()
        return True

    def publish(self) -> None:
        """Send the current state to every outlet (also used after a reload, to refresh STATUS=)."""
        if self.notify_status is not None:
            self._safely("notify", self.notify_status, status_text(self.state, self.reason))
        for listener in list(self._listeners):
            self._safely("listener", listener, self.state, self.reason)
        if self.status_file:
            self._write_file()

    def _write_file(self) -> None:
        payload = {"state": self.state, "reason": self.reason, "since": self.since, "metrics": dict(self.metrics())}
        try:
            write_status_file(self.status_file, payload)  # type: ignore[arg-type]
        except OSError as e:
            if not self._file_failing:
                log.warning("status file not written path=%s error=%s (further failures are not logged)",
                            self.status_file, e.strerror or e)
            self._file_failing = True
        else:
            self._file_failing = False

    @staticmethod
    def _safely(what: str, fn: Callable[..., object], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("status outlet failed outlet=%s", what)
