"""`voice-device status` and `voice-device ctl` as a user runs them against a live control socket."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from device.daemon.control import ControlServer
from device.daemon.status import DeviceStatus
from device.session.status import AgentStatus, SessionMetrics, SessionStatus, TranscriptLine
from tests.daemon.test_control import Recorder

ROOT = Path(__file__).resolve().parents[2]


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "device", *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def daemon() -> AsyncIterator[tuple[ControlServer, Recorder]]:
    d = tempfile.mkdtemp(prefix="vd-cli-")
    recorder = Recorder()
    session = SessionStatus(agent=AgentStatus("agent-1", "listening", "1.0"),
                            transcripts=(TranscriptLine("agent-1", "Hello, how can I help?"),),
                            metrics=SessionMetrics(sessions=3, failures={"auth": 1}, press_to_listening_ms=412,
                                                   press_to_listening_recent_ms=(95, 412)))
    snap = DeviceStatus("muted", None, muted=True, volume=0.8, session=session)
    server = ControlServer(Path(d) / "control.sock", recorder, lambda: snap)
    await server.start()
    yield server, recorder
    await server.close()
    os.rmdir(d)


async def test_status_prints_state_and_metrics(daemon) -> None:
    server, _ = daemon
    rc, out, err = await cli("status", "--socket", str(server.path))
    assert rc == 0, err
    assert out.splitlines() == ["state: muted", "volume: 0.80 (muted)", "agent: agent-1 (listening; protocol 1.0)",
                                "transcripts:",
                                "  agent-1: Hello, how can I help?", "metrics:", "  sessions: 3",
                                "  reconnects: 0", "  failures:", "    auth: 1", "  preconnect_bytes_sent: 0",
                                "  press_to_listening_ms: 412", "  press_to_listening_recent_ms: [95, 412]",
                                "  mic_open: False", "  reloads: 0"]


async def test_status_json_prints_the_snapshot_message(daemon) -> None:
    server, _ = daemon
    rc, out, _ = await cli("status", "--json", "--socket", str(server.path))
    assert rc == 0 and json.loads(out)["metrics"]["sessions"] == 3


async def test_status_follow_prints_each_state_change_until_the_daemon_goes(daemon) -> None:
    server, _ = daemon
    task = asyncio.create_task(cli("status", "--follow", "--json", "--socket", str(server.path)))
    for _ in range(500):  # bounded: wait until the follower is connected
        if server.client_count:
            break
        await asyncio.sleep(0.02)
    server.publish_state("connecting", None)
    server.publish_state("failed", "auth")
    await asyncio.sleep(0.1)
    await server.close()
    rc, out, err = await task
    messages = [json.loads(line) for line in out.splitlines()]
    assert [m.get("state") for m in messages] == ["muted", "connecting", "failed"]
    assert rc == 1 and "closed the connection" in err


async def test_ctl_sends_the_command_and_exits_0_on_ok(daemon) -> None:
    server, recorder = daemon
    assert (await cli("ctl", "mute", "--socket", str(server.path)))[0] == 0
    assert (await cli("ctl", "say", "Hello", "there", "--socket", str(server.path)))[0] == 0
    assert recorder.commands == [{"cmd": "mute"}, {"cmd": "say", "text": "Hello there"}]


async def test_ctl_prints_the_daemons_refusal_and_exits_1(daemon) -> None:
    server, recorder = daemon
    rc, _, err = await cli("ctl", "press", "--socket", str(server.path))
    assert rc == 1 and err.strip() == "voice-device: press is only accepted when the daemon runs with --simulate"
    recorder.refuse = "no session to end"
    rc, _, err = await cli("ctl", "end", "--socket", str(server.path))
    assert rc == 1 and err.strip() == "voice-device: no session to end"


async def test_ctl_and_status_say_so_when_no_daemon_runs(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    for args in (("status",), ("ctl", "start")):
        rc, out, err = await cli(*args, "--socket", str(path))
        assert rc == 1 and out == ""
        assert err.strip() == (f"voice-device: no daemon at {path}: is voice-device running? "
                               "(systemctl status voice-device)")


async def test_the_socket_path_comes_from_the_config(daemon, tmp_path: Path) -> None:
    server, recorder = daemon
    config = tmp_path / "config.yaml"
    config.write_text("livekit:\n  endpoint: https://tokens.example.invalid/t\n"
                      f"daemon:\n  control_socket: {server.path}\n")
    config.chmod(0o600)
    rc, _, err = await cli("ctl", "start", "--config", str(config))
    assert rc == 0, err
    assert recorder.commands == [{"cmd": "start"}]


async def test_ctl_say_without_text_is_a_usage_error() -> None:
    rc, _, err = await cli("ctl", "say", "--socket", "/nonexistent")
    assert rc == 2 and "needs the text" in err
