"""A daemon built only from device.daemon's pieces, wired the way app.py is meant to wire them.

Run by test_wiring.py as a subprocess under a fake systemd (a datagram socket in $NOTIFY_SOCKET). The
"device" here is a dict: `start` moves it to connecting, `end` back to idle, a reload re-reads nothing.
Usage: mini_daemon.py SOCKET_PATH
"""

from __future__ import annotations

import asyncio
import sys
import time

from device.daemon.commands import Command
from device.daemon.control import ControlError, ControlServer
from device.daemon.notify import Notifier, watchdog_interval
from device.daemon.outlets.control_socket import ControlSocketStatus
from device.daemon.outlets.hub import StatusOutlets
from device.daemon.outlets.systemd import SystemdStatus
from device.daemon.signals import SignalHandlers, stop_within
from device.daemon.watchdog import Watchdog


class Device:
    def __init__(self, board: StatusOutlets) -> None:
        self.board = board
        self.last_capture = time.monotonic()

    async def handle(self, cmd: Command) -> None:
        if cmd.name == "start":
            self.board.set_state("connecting")
        elif cmd.name == "end":
            if self.board.state == "idle":
                raise ControlError("no session to end")
            self.board.set_state("idle")

    def health(self) -> tuple[bool, float | None]:
        return False, self.last_capture


async def main(socket_path: str) -> int:
    notifier = Notifier.from_env()
    board = StatusOutlets()
    board.attach(SystemdStatus(notifier.status))
    device = Device(board)
    server = ControlServer(socket_path, device, board.snapshot)
    board.attach(ControlSocketStatus(server.publish_state))

    async def reload() -> None:
        notifier.reloading()
        notifier.ready(board.state)

    signals = SignalHandlers(on_reload=reload)
    signals.install()
    await server.start()
    interval = watchdog_interval()
    watchdog = Watchdog(notifier, interval, device.health) if interval else None
    if watchdog:
        watchdog.start()
    notifier.ready(board.state)
    await signals.wait_for_stop()
    notifier.stopping()

    async def cleanup() -> None:
        if watchdog:
            watchdog.stop()
        await server.close()

    clean = await stop_within(cleanup())
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
