"""systemd's STATUS=: the state and its reason (`failed: auth`), sent on each change of them; `systemctl status`
shows it. The daemon attaches it when systemd is listening ($NOTIFY_SOCKET)."""

from __future__ import annotations

from collections.abc import Callable

from device.daemon.outlets import StatusChange
from device.daemon.status import status_text


class SystemdStatus:
    def __init__(self, notify_status: Callable[[str], object]) -> None:
        self.notify_status = notify_status  # `Notifier.status`

    def publish(self, change: StatusChange) -> None:
        if change.state_changed:
            self.notify_status(status_text(change.status.state, change.status.reason))

    def close(self) -> None:
        pass  # the notifier is the daemon's: it sends READY and STOPPING too
