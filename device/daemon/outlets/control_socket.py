"""The control socket's clients: one `{"type":"state",...}` message on each change of the state or its reason
(`ControlServer.publish_state`); a client that connects is sent the whole status first (`StatusOutlets.snapshot`)."""

from __future__ import annotations

from collections.abc import Callable

from device.daemon.outlets import StatusChange


class ControlSocketStatus:
    def __init__(self, publish_state: Callable[[str, str | None], None]) -> None:
        self.publish_state = publish_state  # `ControlServer.publish_state`

    def publish(self, change: StatusChange) -> None:
        if change.state_changed:
            self.publish_state(change.status.state, change.status.reason)

    def close(self) -> None:
        pass  # the server is the daemon's: it carries the commands too
