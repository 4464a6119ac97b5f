"""Processes for the wire tests: lines from a subprocess with timeouts, the SDK client, the stub, tokens.

Shared by tests/wire/conftest.py and any later end-to-end test (the daemon, the demo): `launch_stub()` starts
the stub SFU inside a namespace and waits for its ready line; `LineProcess` runs any command and lets a test
wait for a line of its output with a timeout.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.stubsfu.control import ControlClient
from tests.stubsfu.netns import NetNs

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def mint_token(identity: str = "device-1", room: str = "room-1", key: str = "devkey", secret: str = "secret",
               ttl: timedelta = timedelta(minutes=10), agent_name: str | None = None) -> str:
    """A token for `room`; with `agent_name`, it dispatches that agent (the stub's agent then carries the name)."""
    from livekit import api

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The HMAC key is")  # `secret` is the --dev secret: short
        token = (api.AccessToken(key, secret).with_identity(identity).with_name(identity)
                 .with_grants(api.VideoGrants(room_join=True, room=room, can_update_own_metadata=True))
                 .with_ttl(ttl))
        if agent_name:
            token = token.with_room_config(api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name=agent_name)]))
        return token.to_jwt()


class LineProcess:
    """A subprocess whose stdout lines are collected by a thread, so tests can wait for one with a timeout."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None, *,
                 new_session: bool = False) -> None:
        """`new_session`: its own process group, so a test can signal the group as a terminal's Ctrl-C would."""
        self.argv = argv
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     env=env or {**os.environ, "PYTHONUNBUFFERED": "1"},
                                     start_new_session=new_session)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_line(self, predicate: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching line from {self.argv[-1]!r} within {timeout} s; "
                                     f"got {self.lines[-8:]}; log {self.log_path}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process ended (rc={self.proc.wait()}) before a matching line; "
                                     f"got {self.lines[-8:]}; log tail: {self.log_tail()}")
            self.lines.append(line)
            if predicate(line):
                return line

    def drain(self) -> list[str]:
        """Every line printed so far (those no wait has read yet taken in too)."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if line is None:
                self._queue.put(None)  # the end stays for a later wait
                return self.lines
            self.lines.append(line)

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{self.argv[-1]!r} did not finish within {timeout} s; log {self.log_path}") from None
        self._thread.join(timeout=2)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return rc

    def stop(self, grace: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=grace)
        self._log.close()

    def kill(self) -> None:
        """SIGKILL: the process dies without a word (no goodbye to anyone), then its log is closed."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.stop()

    def log_tail(self, n: int = 15) -> str:
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


class Owned:
    """What a test does to a program it runs (`self.process`, a LineProcess once started): kill it (SIGKILL),
    stop it (SIGTERM, then SIGKILL after `grace`), ask whether it runs, read its log. Mixed into the rig's
    program classes (dataclasses holding `process`)."""

    process: LineProcess | None

    def kill(self) -> None:
        """SIGKILL: the program dies without telling anyone."""
        if self.process is not None:
            self.process.kill()

    def stop(self, grace: float = 10.0) -> None:
        if self.process is not None:
            self.process.stop(grace=grace)

    def alive(self) -> bool:
        return self.process is not None and self.process.proc.poll() is None

    def log(self) -> str:
        return self.process.log_tail(100_000) if self.process else ""


class ClientRun(LineProcess):
    """The SDK client script (tests/wire/client.py); its stdout is JSON events."""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = [json.loads(line) for line in self.lines if line.startswith("{")]
        return [e for e in out if name is None or e["event"] == name]

    def wait_event(self, name: str, timeout: float, **match: Any) -> dict[str, Any]:
        def ok(line: str) -> bool:
            if not line.startswith("{"):
                return False
            event = json.loads(line)
            return event["event"] == name and all(event.get(k) == v for k, v in match.items())

        return json.loads(self.wait_line(ok, timeout))


@dataclass
class Stub:
    process: LineProcess
    url: str
    control: ControlClient
    record_dir: Path
    events_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.events_path = self.record_dir / "events.jsonl"

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return self.control.events(kind)

    def session_dir(self, n: int) -> Path:
        return self.record_dir / f"session-{n}"


def launch_stub(netns: NetNs, workdir: Path, *args: str) -> Stub:
    """The stub inside `netns`, recording under `workdir`; returns once it accepts joins."""
    stamp = time.monotonic_ns()
    record, control = workdir / f"record-{stamp}", workdir / f"stub-{stamp}.sock"
    process = LineProcess(netns.command([PYTHON, "-m", "tests.stubsfu", "--host", netns.server_ip, "--port", "0",
                                         "--record", str(record), "--control", str(control), *args]),
                          workdir / f"stub-{stamp}.log")
    try:
        ready = process.wait_line(lambda line: line.startswith("stubsfu ready"), timeout=20)
    except BaseException:
        process.stop()
        raise
    url = ready.split("url=", 1)[1].split()[0]
    return Stub(process=process, url=url, control=ControlClient(control), record_dir=record)
