"""The control protocol end to end over a real unix socket: snapshot, state stream, commands, hostile peers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.daemon.commands import Command
from device.daemon.control import MAX_LINE, ControlError, ControlServer, ControlSocketInUse
from device.daemon.status import DeviceStatus
from device.session.status import SessionMetrics, SessionStatus

TIMEOUT = 5.0


class Recorder:
    """The app's side: records commands; `refuse` makes the next commands fail like a busy device would."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []
        self.refuse: str | None = None
        self.crash = False

    async def handle(self, cmd: Command) -> None:
        if self.crash:
            raise RuntimeError("bug in the app")
        if self.refuse:
            raise ControlError(self.refuse)
        self.commands.append(cmd.to_json())


class Peer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def read(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        assert line.endswith(b"\n"), f"connection closed, got {line!r}"
        return json.loads(line)

    async def send(self, data: bytes | dict[str, Any]) -> None:
        self.writer.write(data if isinstance(data, bytes) else json.dumps(data).encode() + b"\n")
        await self.writer.drain()

    async def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        await self.send(cmd)
        return await self.read()

    async def rest(self) -> list[dict[str, Any]]:
        """Everything until the server closes the connection."""
        data = await asyncio.wait_for(self.reader.read(), TIMEOUT)
        return [json.loads(line) for line in data.splitlines()]

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def sock_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="vd-c-"))  # short: sun_path holds 108 bytes
    yield d
    for p in d.rglob("*"):
        if not p.is_dir():
            p.unlink()
    for p in sorted(d.rglob("*"), reverse=True):
        p.rmdir()
    d.rmdir()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_server(path: Path, recorder: Recorder, **kw: Any) -> ControlServer:
    snap = DeviceStatus("idle", None, session=SessionStatus(metrics=SessionMetrics(sessions=2, failures={"auth": 1})))
    return ControlServer(path, recorder, lambda: snap, clock=lambda: 1700000000.5, **kw)


@pytest.fixture
async def server(sock_dir: Path, recorder: Recorder) -> AsyncIterator[ControlServer]:
    s = make_server(sock_dir / "run" / "control.sock", recorder)
    await s.start()
    yield s
    await s.close()


async def connect(server: ControlServer) -> Peer:
    reader, writer = await asyncio.open_unix_connection(str(server.path), limit=4 * MAX_LINE)
    return Peer(reader, writer)


async def test_a_client_first_receives_the_snapshot(server: ControlServer) -> None:
    peer = await connect(server)
    snap = await peer.read()
    assert (snap["type"], snap["state"], snap["reason"]) == ("snapshot", "idle", None)
    assert (snap["metrics"]["sessions"], snap["metrics"]["failures"]) == (2, {"auth": 1})
    peer.close()


async def test_state_changes_reach_every_client_in_order(server: ControlServer) -> None:
    a, b = await connect(server), await connect(server)
    await a.read(), await b.read()
    server.publish_state("connecting", None)
    server.publish_state("failed", "auth")
    for peer in (a, b):
        assert await peer.read() == {"type": "state", "state": "connecting", "reason": None, "t": 1700000000.5}
        assert await peer.read() == {"type": "state", "state": "failed", "reason": "auth", "t": 1700000000.5}
        peer.close()


@pytest.mark.parametrize("cmd", [{"cmd": "start"}, {"cmd": "end"}, {"cmd": "mute"}, {"cmd": "unmute"},
                                 {"cmd": "say", "text": "Hello there"}])
async def test_each_command_is_handed_to_the_app_and_answered_ok(server: ControlServer, recorder: Recorder,
                                                                 cmd: dict[str, Any]) -> None:
    peer = await connect(server)
    await peer.read()
    assert await peer.ask({**cmd, "extra": "ignored"}) == {"type": "ok"}
    assert recorder.commands == [cmd]
    peer.close()


async def test_press_and_release_are_refused_without_simulate(server: ControlServer, recorder: Recorder) -> None:
    peer = await connect(server)
    await peer.read()
    for cmd in ("press", "release"):
        reply = await peer.ask({"cmd": cmd})
        assert reply["type"] == "error" and "--simulate" in reply["message"]
    assert recorder.commands == []
    peer.close()


async def test_press_and_release_work_in_simulate_mode(sock_dir: Path, recorder: Recorder) -> None:
    server = make_server(sock_dir / "control.sock", recorder, simulate=True)
    await server.start()
    try:
        peer = await connect(server)
        await peer.read()
        assert await peer.ask({"cmd": "press"}) == {"type": "ok"}
        assert await peer.ask({"cmd": "release"}) == {"type": "ok"}
        assert recorder.commands == [{"cmd": "press"}, {"cmd": "release"}]
        peer.close()
    finally:
        await server.close()


async def test_a_refused_command_is_answered_with_the_apps_sentence(server: ControlServer,
                                                                    recorder: Recorder) -> None:
    recorder.refuse = "no session to end"
    peer = await connect(server)
    await peer.read()
    assert await peer.ask({"cmd": "end"}) == {"type": "error", "message": "no session to end"}
    peer.close()


async def test_a_bug_in_the_handler_is_an_error_reply_not_a_dead_daemon(server: ControlServer,
                                                                        recorder: Recorder) -> None:
    recorder.crash = True
    peer = await connect(server)
    await peer.read()
    reply = await peer.ask({"cmd": "start"})
    assert reply["type"] == "error" and "daemon log" in reply["message"]
    recorder.crash = False
    assert await peer.ask({"cmd": "start"}) == {"type": "ok"}
    peer.close()


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b"hello\n", "invalid JSON"),
        (b"\xff\xfe{}\n", "UTF-8"),
        (b"[1, 2]\n", "JSON object"),
        (b'"start"\n', "JSON object"),
        (b'{"command": "start"}\n', 'missing "cmd"'),
        (b'{"cmd": 7}\n', 'missing "cmd"'),
        (b'{"cmd": "reboot"}\n', "unknown command 'reboot'"),
        (b'{"cmd": "say"}\n', 'non-empty "text"'),
        (b'{"cmd": "say", "text": "  "}\n', 'non-empty "text"'),
        (b'{"cmd": "say", "text": 5}\n', 'non-empty "text"'),
        (b"1" * 5000 + b"\n", "too large"),
        (b"[" * 60000 + b"\n", "nested too deeply"),
    ],
)
async def test_bad_lines_get_an_error_reply_and_the_connection_stays_usable(
    server: ControlServer, recorder: Recorder, line: bytes, says: str
) -> None:
    peer = await connect(server)
    await peer.read()
    await peer.send(line)
    reply = await peer.read()
    assert reply["type"] == "error" and says in reply["message"], reply
    assert await peer.ask({"cmd": "mute"}) == {"type": "ok"}
    assert recorder.commands == [{"cmd": "mute"}]
    peer.close()


async def test_a_line_over_64_kib_is_refused_and_the_connection_closed(server: ControlServer,
                                                                      recorder: Recorder) -> None:
    peer = await connect(server)
    await peer.read()
    await peer.send(b'{"cmd": "say", "text": "' + b"a" * (MAX_LINE + 10) + b'"}\n')
    replies = await peer.rest()
    assert len(replies) == 1 and replies[0]["type"] == "error" and "longer than" in replies[0]["message"]
    assert recorder.commands == []
    other = await connect(server)
    await other.read()
    assert await other.ask({"cmd": "start"}) == {"type": "ok"}
    other.close()


async def test_blank_lines_are_ignored_and_a_last_line_without_newline_is_answered(server: ControlServer) -> None:
    peer = await connect(server)
    await peer.read()
    await peer.send(b'\n  \r\n{"cmd": "mute"}')
    peer.writer.write_eof()
    assert await peer.rest() == [{"type": "ok"}]


async def test_a_client_that_stops_reading_is_dropped_and_others_are_served(server: ControlServer) -> None:
    stuck = await connect(server)  # never reads a byte
    live = await connect(server)
    await live.read()
    big_reason = "x" * 4000
    sent = 0
    received = 0
    # Publish until the stuck client is dropped; the live one drains as it goes. Bounded, never blocking.
    for _ in range(5000):
        server.publish_state("speaking", big_reason)
        sent += 1
        await live.read()
        received += 1
        if server.client_count == 1:
            break
    assert server.client_count == 1 and server.dropped_clients == 1
    assert received == sent
    server.publish_state("idle", None)
    assert (await live.read())["state"] == "idle"
    stuck.close()
    live.close()


async def test_the_socket_gets_the_configured_mode_and_its_parent_directory_is_created(sock_dir: Path,
                                                                                        recorder: Recorder) -> None:
    path = sock_dir / "a" / "b" / "control.sock"
    server = make_server(path, recorder, mode=0o600)
    await server.start()
    try:
        st_ = os.stat(path)
        assert stat.S_ISSOCK(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o600
    finally:
        await server.close()
    assert not path.exists()


async def test_a_stale_socket_file_is_replaced(sock_dir: Path, recorder: Recorder) -> None:
    path = sock_dir / "control.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays; nobody listens: a crashed daemon's leftover
    server = make_server(path, recorder)
    await server.start()
    try:
        peer = await connect(server)
        assert (await peer.read())["type"] == "snapshot"
        peer.close()
    finally:
        await server.close()


async def test_a_live_socket_of_another_daemon_is_refused_with_a_clear_error(server: ControlServer,
                                                                            recorder: Recorder) -> None:
    second = make_server(server.path, recorder)
    with pytest.raises(ControlSocketInUse, match="another voice-device is already running"):
        await second.start()
    peer = await connect(server)  # the first daemon is unharmed
    assert (await peer.read())["type"] == "snapshot"
    peer.close()


async def test_a_path_that_is_not_a_socket_is_never_deleted(sock_dir: Path, recorder: Recorder) -> None:
    path = sock_dir / "control.sock"
    path.write_text("precious")
    with pytest.raises(ControlSocketInUse, match="not a socket"):
        await make_server(path, recorder).start()
    assert path.read_text() == "precious"


# ---- any bytes at all -----------------------------------------------------------------------------------------


def expected_replies(data: bytes) -> int:
    return sum(1 for line in data.split(b"\n") if line.strip())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([b"{", b"}", b'"cmd"', b":", b'"say"', b'"text"', b"\n", b"\xff", b"[", b"1",
                              b'"start"', b" ", b",", b"\x00", b"null"]), max_size=40).map(b"".join),
))
def test_any_bytes_get_one_reply_per_line_or_a_closed_connection_and_the_daemon_keeps_answering(
    data: bytes, sock_dir: Path
) -> None:
    async def scenario() -> None:
        recorder = Recorder()
        server = make_server(sock_dir / "fuzz.sock", recorder)
        await server.start()
        try:
            peer = await connect(server)
            assert (await peer.read())["type"] == "snapshot"
            await peer.send(data)
            peer.writer.write_eof()
            replies = await peer.rest()
            assert all(r["type"] in ("ok", "error") for r in replies)
            assert len(replies) == expected_replies(data)
            assert len(recorder.commands) == sum(r["type"] == "ok" for r in replies)
            peer.close()
            after = await connect(server)
            await after.read()
            assert await after.ask({"cmd": "unmute"}) == {"type": "ok"}
            after.close()
        finally:
            await server.close()

    asyncio.run(scenario())
