"""The status board sends each state change once to systemd, the control socket and the status file."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import pytest

from device.daemon.control import ControlServer
from device.daemon.notify import Notifier
from device.daemon.status import StatusBoard, status_text
from tests.daemon.conftest import NotifySocket
from tests.daemon.test_control import Peer, Recorder


def test_status_text_names_the_reason_of_a_failure() -> None:
    assert status_text("listening", None) == "listening"
    assert status_text("failed", "auth") == "failed: auth"


def test_a_change_reaches_systemd_listeners_and_the_file_once(notify_socket: NotifySocket, tmp_path: Path) -> None:
    seen: list[tuple[str, str | None]] = []
    board = StatusBoard(Notifier(notify_socket.address).status, str(tmp_path / "status.json"),
                        metrics=lambda: {"sessions": 1}, clock=lambda: 1700000000.0)
    board.subscribe(lambda s, r: seen.append((s, r)))
    assert board.set_state("failed", "auth") is True
    assert board.set_state("failed", "auth") is False  # no change, nothing sent
    assert notify_socket.messages() == [{"STATUS": "failed: auth"}]
    assert seen == [("failed", "auth")]
    assert json.loads((tmp_path / "status.json").read_text()) == {
        "state": "failed", "reason": "auth", "since": 1700000000.0, "metrics": {"sessions": 1}}


def test_a_broken_outlet_does_not_stop_the_others(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def broken(state: str, reason: str | None) -> None:
        raise RuntimeError("bug")

    board = StatusBoard(status_file=str(tmp_path / "missing-dir" / "status.json"))
    board.subscribe(broken)
    board.subscribe(lambda s, r: seen.append(s))
    board.set_state("listening")
    board.set_state("thinking")
    assert seen == ["listening", "thinking"]
    assert caplog.text.count("status file not written") == 1


async def test_control_clients_get_the_boards_snapshot_and_changes() -> None:
    d = Path(tempfile.mkdtemp(prefix="vd-s-"))
    board = StatusBoard(metrics=lambda: {"reconnects": 2})
    board.set_state("muted")
    server = ControlServer(d / "control.sock", Recorder(), board.snapshot)
    board.subscribe(server.publish_state)
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        peer = Peer(reader, writer)
        assert await peer.read() == {"type": "snapshot", "state": "muted", "reason": None,
                                     "metrics": {"reconnects": 2}, "transcripts": []}
        board.set_state("connecting")
        assert (await peer.read())["state"] == "connecting"
        peer.close()
    finally:
        await server.close()
        d.rmdir()
