"""systemd's notify protocol in pure Python: READY, STATUS, STOPPING, RELOADING and WATCHDOG datagrams.

`$NOTIFY_SOCKET` names a unix datagram socket: a filesystem path, or an abstract one when it starts with `@`.
Every message is one `sendto` on an unconnected socket, so a socket that was missing at start-up or vanished
(systemd re-executing itself) is picked up again by the next message with no reconnect logic. Failures are
logged once at warning level and never raised: telling systemd about our health must never hurt that health.
Without `$NOTIFY_SOCKET` (a terminal, a test) every call is a silent no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger("device.daemon.notify")


def _address(raw: str) -> str | bytes:
    # A leading '@' is systemd's spelling of Linux's abstract namespace (a leading NUL byte).
    return b"\0" + raw[1:].encode() if raw.startswith("@") else raw


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment: a status text must never smuggle in READY=1.
    return " ".join(text.split())


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of `$WATCHDOG_USEC`), or None when systemd wants none.

    `$WATCHDOG_PID`, when set, must name this process: a child that inherited the environment must not ping.
    """
    env = os.environ if env is None else env
    pid = os.getpid() if pid is None else pid
    raw_usec = env.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw_usec)
    except ValueError:
        if raw_usec:
            log.warning("watchdog ignored reason=unparsable WATCHDOG_USEC=%r", raw_usec)
        return None
    if usec <= 0:
        return None
    raw_pid = env.get("WATCHDOG_PID", "")
    if raw_pid:
        try:
            if int(raw_pid) != pid:
                return None
        except ValueError:
            log.warning("watchdog ignored reason=unparsable WATCHDOG_PID=%r", raw_pid)
            return None
    return usec / 1_000_000 / 2


class Notifier:
    """Sends notify messages to systemd; every method is safe to call from any thread and never raises."""

    def __init__(self, socket_path: str | None):
        self.socket_path = socket_path or None
        self._address = _address(self.socket_path) if self.socket_path else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failing = False  # True after a failure was logged; reset (and logged) on the next success

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str | int) -> bool:
        """Send `KEY=value` lines in one datagram (`send(READY=1, STATUS="idle")`); True if it was delivered."""
        if self._address is None:
            return False
        payload = "\n".join(f"{k}={_one_line(str(v))}" for k, v in fields.items()).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(payload, self._address)
            except OSError as e:
                if not self._failing:
                    self._failing = True
                    log.warning("notify failed socket=%s error=%s (further failures are not logged)",
                                self.socket_path, e.strerror or e)
                return False
            if self._failing:
                self._failing = False
                log.info("notify recovered socket=%s", self.socket_path)
            return True

    def ready(self, status: str | None = None) -> bool:
        return self.send(READY=1, **({"STATUS": status} if status is not None else {}))

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def stopping(self, status: str | None = None) -> bool:
        return self.send(STOPPING=1, **({"STATUS": status} if status is not None else {}))

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1 with MONOTONIC_USEC: systemd 253+ needs the timestamp for Type=notify-reload; 252 ignores
        it. The reload is over when `ready()` is sent again."""
        fields: dict[str, str | int] = {"RELOADING": 1, "MONOTONIC_USEC": time.clock_gettime_ns(time.CLOCK_MONOTONIC)
                                        // 1000}
        if status is not None:
            fields["STATUS"] = status
        return self.send(**fields)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
