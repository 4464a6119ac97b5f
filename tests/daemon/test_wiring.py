"""The daemon pieces composed as app.py will compose them, in a subprocess under a fake systemd:
READY, STATUS on changes, WATCHDOG pings, RELOADING then READY on SIGHUP, STOPPING and exit 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.daemon.client import ControlClient
from tests.daemon.conftest import NotifySocket

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def daemon(notify_socket: NotifySocket) -> Iterator[tuple[subprocess.Popen[str], str]]:
    d = tempfile.mkdtemp(prefix="vd-w-")
    sock = f"{d}/control.sock"
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "400000", "PYTHONPATH": str(ROOT)}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("mini_daemon.py")), sock], env=env,
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        yield proc, sock
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for p in Path(d).iterdir():
            p.unlink()
        os.rmdir(d)


def wait_for(notify: NotifySocket, key: str, limit: int = 50) -> dict[str, str]:
    """The next message carrying `key`, skipping watchdog pings (each recv is bounded by a timeout)."""
    for _ in range(limit):
        msg = notify.next(timeout_s=10)
        if key in msg:
            return msg
    raise AssertionError(f"no {key} within {limit} messages")


def test_ready_status_reload_and_stop_as_systemd_sees_them(daemon, notify_socket: NotifySocket) -> None:
    proc, sock = daemon
    assert wait_for(notify_socket, "READY") == {"READY": "1", "STATUS": "idle"}
    assert wait_for(notify_socket, "WATCHDOG") == {"WATCHDOG": "1"}
    with ControlClient(sock) as client:
        assert client.snapshot()["state"] == "idle"
        assert client.command({"cmd": "start"}) == {"type": "ok"}
        change = client.read()
        assert (change["type"], change["state"], change["reason"]) == ("state", "connecting", None)
    assert wait_for(notify_socket, "STATUS") == {"STATUS": "connecting"}
    proc.send_signal(signal.SIGHUP)
    reloading = wait_for(notify_socket, "RELOADING")
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
    assert wait_for(notify_socket, "READY") == {"READY": "1", "STATUS": "connecting"}
    proc.send_signal(signal.SIGTERM)
    assert wait_for(notify_socket, "STOPPING") == {"STOPPING": "1"}
    assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
    assert not Path(sock).exists()
