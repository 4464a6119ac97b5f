"""The client side of the control socket, for `voice-device status` and `voice-device ctl`.

Plain blocking sockets: a command-line tool needs no event loop. Every failure a user can meet becomes a
`ClientError` whose message is the sentence to print (daemon not running, no permission, no answer).
"""

from __future__ import annotations

import json
import socket
import time
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import datetime

from device.core.codec import DecodeError, from_json
from device.core.dynamic import JSON
from device.daemon.status import DeviceStatus

REPLY_TIMEOUT_S = 15.0


class ClientError(Exception):
    """A failure to talk to the daemon; the message is one sentence saying what to do."""


class ControlClient:
    def __init__(self, path: str, timeout_s: float = REPLY_TIMEOUT_S):
        self.path = path
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._skipped: deque[dict[str, JSON]] = deque()  # messages `command` read past while awaiting its reply

    def __enter__(self) -> ControlClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise ClientError(f"no daemon at {self.path}: is voice-device running? (systemctl status voice-device)") \
                from None
        except PermissionError:
            sock.close()
            raise ClientError(f"permission denied on {self.path}: join the voice-device group "
                              "(sudo usermod -aG voice-device $USER, then log in again) or use sudo") from None
        except OSError as e:
            sock.close()
            raise ClientError(f"cannot connect to {self.path}: {e.strerror or e}") from None
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def read(self, timeout_s: float | None = None) -> dict[str, JSON]:
        """The next message; `timeout_s=None` uses the client's reply timeout, 0 waits for ever."""
        if self._skipped:
            return self._skipped.popleft()
        return self._receive(timeout_s)

    def _receive(self, timeout_s: float | None) -> dict[str, JSON]:
        assert self._sock is not None, "connect() first"
        self._sock.settimeout(None if timeout_s == 0 else (timeout_s or self.timeout_s))
        while b"\n" not in self._buffer:
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise ClientError(f"the daemon at {self.path} did not answer within {self.timeout_s:g} s; "
                                  "see its log (journalctl -u voice-device)") from None
            except OSError as e:
                raise ClientError(f"lost the connection to the daemon: {e.strerror or e}") from None
            if not chunk:
                raise ClientError("the daemon closed the connection (it may be stopping)")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            raise ClientError("the daemon sent something that is not JSON; is this a voice-device socket?") from None
        if not isinstance(message, dict):
            raise ClientError("the daemon sent something unexpected; is this a voice-device socket?")
        return message

    def snapshot(self) -> dict[str, JSON]:
        message = self.read()
        if message.get("type") != "snapshot":
            raise ClientError(str(message.get("message") or "the daemon did not send its status"))
        return message

    def command(self, cmd: Mapping[str, JSON]) -> dict[str, JSON]:
        """Send one command and return its reply (`ok` or `error`); state messages that arrive first (the
        command's own effect often does) are kept for the next `read`."""
        assert self._sock is not None, "connect() first"
        self._sock.settimeout(self.timeout_s)
        try:
            self._sock.sendall(json.dumps(dict(cmd)).encode() + b"\n")
        except OSError as e:
            raise ClientError(f"lost the connection to the daemon: {e.strerror or e}") from None
        deadline = time.monotonic() + self.timeout_s
        while True:
            message = self._receive(timeout_s=max(0.001, deadline - time.monotonic()))
            if message.get("type") in ("ok", "error"):
                return message
            self._skipped.append(message)

    def follow(self) -> Iterator[dict[str, JSON]]:
        """Every message after the snapshot, for ever (until the daemon closes the connection)."""
        while True:
            yield self.read(timeout_s=0)


def parse_status(snap: Mapping[str, JSON]) -> DeviceStatus:
    """The daemon's snapshot message as the `DeviceStatus` it was rendered from."""
    try:
        return from_json(DeviceStatus, dict(snap))
    except DecodeError as e:
        raise ClientError(f"the daemon sent a status this version cannot read ({e}); are both the same version?") \
            from None


def format_snapshot(snap: Mapping[str, JSON]) -> str:
    status = parse_status(snap)
    lines = [f"state: {status.state}"]
    if status.version:
        lines.append(f"version: {status.version}")
    if status.reason:
        lines.append(f"reason: {status.reason}" + (f" — {status.message}" if status.message else ""))
    if status.detail:
        lines.append(f"detail: {status.detail}")
    session = status.session
    if status.volume is not None:
        lines.append(f"volume: {status.volume:.2f}" + (" (muted)" if status.muted else ""))
    if session.agent.identity:
        protocol = f"protocol {session.agent.protocol}" if session.agent.protocol else "speaks no voice-device protocol"
        lines.append(f"agent: {session.agent.identity} ({session.agent.state or 'no state yet'}; {protocol})")
    if session.transcripts:
        lines.append("transcripts:")
        lines.extend(f"  {t.speaker}: {t.text}" for t in session.transcripts)
    lines.append("metrics:")
    lines.extend(_format_metrics(status.metrics(), indent=2))
    return "\n".join(lines)


def _format_metrics(metrics: Mapping[str, JSON], indent: int) -> list[str]:
    out = []
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            out.append(f"{' ' * indent}{key}:" + ("" if value else " {}"))
            out.extend(_format_metrics(value, indent + 2))
        else:
            out.append(f"{' ' * indent}{key}: {value}")
    return out


def format_state(message: Mapping[str, JSON]) -> str:
    t = message.get("t")
    when = datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S") if isinstance(t, (int, float)) else "-"
    reason = f" ({message['reason']})" if message.get("reason") else ""
    return f"{when} {message.get('state')}{reason}"
