"""The status hub sends each state change once to systemd, the control socket and the status file."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import pytest

from device.config.schema import Config, DaemonConfig
from device.daemon.control import ControlServer
from device.daemon.notify import Notifier
from device.daemon.outlets import configured
from device.daemon.outlets.control_socket import ControlSocketStatus
from device.daemon.outlets.hub import StatusOutlets
from device.daemon.outlets.status_file import StatusFile
from device.daemon.outlets.systemd import SystemdStatus
from device.daemon.status import DeviceStatus, status_json, status_text
from device.session.status import SessionMetrics, SessionStatus, TranscriptLine
from tests.daemon.conftest import NotifySocket
from tests.daemon.test_control import Peer, Recorder


def test_status_text_names_the_reason_of_a_failure() -> None:
    assert status_text("listening", None) == "listening"
    assert status_text("failed", "auth") == "failed: auth"


def test_a_change_reaches_systemd_listeners_and_the_file_once(notify_socket: NotifySocket, tmp_path: Path) -> None:
    seen: list[tuple[str, str | None]] = []
    details = DeviceStatus(session=SessionStatus(metrics=SessionMetrics(sessions=1)))
    board = StatusOutlets(details=lambda: details, clock=lambda: 1700000000.0)
    board.attach(SystemdStatus(Notifier(notify_socket.address).status))
    board.attach(ControlSocketStatus(lambda s, r: seen.append((s, r))))
    board.configure(configured(Config(daemon=DaemonConfig(status_file=str(tmp_path / "status.json")))))
    assert board.set_state("failed", "auth") is True
    assert board.set_state("failed", "auth") is False  # no change, nothing sent
    assert notify_socket.messages() == [{"STATUS": "failed: auth"}]
    assert seen == [("failed", "auth")]
    written = json.loads((tmp_path / "status.json").read_text())
    assert (written["state"], written["reason"], written["since"]) == ("failed", "auth", 1700000000.0)
    assert written["metrics"]["sessions"] == 1
    assert written == status_json(DeviceStatus("failed", "auth", since=1700000000.0, session=details.session))


def test_a_broken_outlet_does_not_stop_the_others(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def broken(state: str, reason: str | None) -> None:
        raise RuntimeError("bug")

    board = StatusOutlets()
    board.configure([StatusFile(str(tmp_path / "missing-dir" / "status.json"))])
    board.attach(ControlSocketStatus(broken))
    board.attach(ControlSocketStatus(lambda s, r: seen.append(s)))
    board.set_state("listening")
    board.set_state("thinking")
    assert seen == ["listening", "thinking"]
    assert caplog.text.count("status file not written") == 1


async def test_control_clients_get_the_boards_snapshot_and_changes() -> None:
    d = Path(tempfile.mkdtemp(prefix="vd-s-"))
    board = StatusOutlets(details=lambda: DeviceStatus(session=SessionStatus(metrics=SessionMetrics(reconnects=2))))
    board.set_state("muted")
    server = ControlServer(d / "control.sock", Recorder(), board.snapshot)
    board.attach(ControlSocketStatus(server.publish_state))
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        peer = Peer(reader, writer)
        snap = await peer.read()
        assert (snap["type"], snap["state"], snap["reason"], snap["metrics"]["reconnects"]) == (
            "snapshot", "muted", None, 2)
        board.set_state("connecting")
        assert (await peer.read())["state"] == "connecting"
        peer.close()
    finally:
        await server.close()
        d.rmdir()


def test_the_status_json_is_read_back_as_the_same_device_status() -> None:
    from device.audio.stats import AudioStats
    from device.controls.machine import ClientFlags
    from device.core.codec import from_json
    from device.core.vocabulary import FailureReason
    from device.session.status import (
        AgentStatus,
        FailureStatus,
        ProcessStatus,
        TranscriptLine,
        TurnsStatus,
        UplinkStatus,
    )

    session = SessionStatus(
        phase="connected", room="voice-device-1", identity="device-1", agent=AgentStatus("agent-1", "speaking"),
        turns=TurnsStatus(rpc=True), transcripts=(TranscriptLine("agent-1", "It is sunny."),),
        preconnect=UplinkStatus("live", bytes_sent=96000, streams=1, last_stream_closed="subscribed"),
        last_failure=FailureStatus(FailureReason.AGENT_LEFT, "", 1.5),
        metrics=SessionMetrics(sessions=4, failures={"agent-left": 1}, press_to_listening_ms=120),
        process=ProcessStatus(4321, 5))
    status = DeviceStatus("speaking", None, since=1700000000.0, volume=0.6, mic_open=True,
                          flags=ClientFlags(can_listen=True, is_connected=True, is_finished=False), session=session,
                          audio=AudioStats(frames_captured=100, mic_open=True), reloads=1)
    wire = json.loads(json.dumps(status_json(status)))
    assert from_json(DeviceStatus, wire) == status
    assert wire["metrics"]["session_processes_started"] == 5 and wire["flags"]["is_connected"] is True


def test_a_status_field_of_the_wrong_type_is_named() -> None:
    from device.core.codec import DecodeError, from_json

    with pytest.raises(DecodeError, match=r"DeviceStatus\.session\.metrics\.sessions"):
        from_json(DeviceStatus, {"state": "idle", "session": {"metrics": {"sessions": "four"}}})


def test_the_status_file_on_disk_holds_no_transcripts_while_the_snapshot_in_memory_does(tmp_path: Path) -> None:
    said = (TranscriptLine("device-1", "my door code is 4711"), TranscriptLine("agent-1", "noted: 4711"))
    details = DeviceStatus(session=SessionStatus(transcripts=said))
    board = StatusOutlets(details=lambda: details, clock=lambda: 1700000000.0)
    board.configure([StatusFile(str(tmp_path / "status.json"))])
    board.set_state("listening")
    assert board.snapshot().session.transcripts == said  # the control socket's answer, from memory
    on_disk = (tmp_path / "status.json").read_text()
    assert "4711" not in on_disk
    assert json.loads(on_disk)["session"]["transcripts"] == []


def test_a_new_configuration_replaces_and_closes_the_configured_outlets_and_keeps_the_attached_ones() -> None:
    class Kept:
        def __init__(self) -> None:
            self.states: list[str] = []
            self.closed = False

        def publish(self, change) -> None:
            self.states.append(change.status.state)

        def close(self) -> None:
            self.closed = True

    attached, old, new = Kept(), Kept(), Kept()
    board = StatusOutlets()
    board.attach(attached)
    board.configure([old])
    board.set_state("listening")
    board.configure([new])  # a reload
    board.set_state("thinking")
    assert (attached.states, old.states, new.states) == (["listening", "thinking"], ["listening"], ["thinking"])
    assert (attached.closed, old.closed, new.closed) == (False, True, False)
    board.close()
    assert attached.closed and new.closed


def test_the_status_names_the_software_version_and_status_shows_it() -> None:
    from device import __version__
    from device.daemon.client import format_snapshot

    wire = json.loads(json.dumps(status_json(DeviceStatus("idle", version=__version__))))
    assert wire["version"] == __version__
    assert format_snapshot({"type": "snapshot", **wire}).splitlines()[:2] == ["state: idle", f"version: {__version__}"]
