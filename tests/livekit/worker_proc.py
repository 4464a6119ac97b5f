"""The test agent worker as a process inside the namespace, and what it recorded (tests/livekit/agent/record.py).

`Worker.start()` runs `python -m tests.livekit.agent` with .venv-agent's interpreter and returns once the
server has registered it; `room(name)` reads that room's recording: events, and each STT stream's samples.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.livekit.server import API_KEY, API_SECRET, Server
from tests.wire.harness import ROOT, LineProcess

AGENT_VENV = Path(os.environ.get("VOICE_DEVICE_AGENT_VENV", ROOT / ".venv-agent"))
AGENT_PYTHON = AGENT_VENV / "bin" / "python"
REGISTER_TIMEOUT_S = 90.0  # imports (livekit-agents, onnxruntime, silero) take ~10 s on a busy 2-core machine


def agent_unavailable_reason() -> str | None:
    if not AGENT_PYTHON.exists():
        return f"the test agent's virtualenv {AGENT_VENV} is missing: scripts/setup.sh creates it"
    return None


@dataclass
class RoomRecording:
    folder: Path

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        path = self.folder / "events.jsonl"
        if not path.exists():
            return []
        out = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e for e in out if kind is None or e["event"] == kind]

    def stt(self, stream: int) -> np.ndarray:
        data = (self.folder / f"stt-{stream}.raw").read_bytes()
        return np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2").astype(np.int16)

    def states(self) -> list[str]:
        return [e["new"] for e in self.events("agent_state")]


@dataclass
class Worker:
    """The test agent (tests/livekit/agent); a subclass runs another agent program (`argv`, `env`, `registered`)."""

    server: Server
    workdir: Path
    agent_name: str
    start_turn_delay_s: float = 0.0
    export: Path | None = None  # the demo's --record DIR: each finished job as DIR/session-N/
    tag: str = ""  # tells apart, in log names, workers of one agent name (a cluster's, one per node)
    process: LineProcess | None = None
    _server_starts_at_start: int = 0
    _starts: int = 0

    @property
    def record_dir(self) -> Path:
        return self.workdir / f"agent-{self.agent_name}"

    def argv(self) -> list[str]:
        argv = [str(AGENT_PYTHON), "-m", "tests.livekit.agent", "--url", self.server.url, "--api-key", API_KEY,
                "--api-secret", API_SECRET, "--agent-name", self.agent_name, "--record", str(self.record_dir)]
        if self.start_turn_delay_s:
            argv += ["--start-turn-delay", str(self.start_turn_delay_s)]
        if self.export is not None:
            argv += ["--export", str(self.export)]
        return argv

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("VIRTUAL_ENV", None)
        return env

    def registered(self, line: str) -> bool:
        return line.startswith("agent worker registered")

    def start(self) -> Worker:
        self._server_starts_at_start = self.server.starts
        self._starts += 1
        log = self.workdir / f"agent-{self.agent_name}{self.tag}-{self._starts}.log"
        self.process = LineProcess(self.server.ns.command(self.argv()), log, env=self.env())
        self.process.wait_line(self.registered, REGISTER_TIMEOUT_S)
        return self

    def ids(self) -> list[str]:
        """The worker ids the server gave it, one per registration (`AW_…`)."""
        if self.process is None:
            return []
        found = (re.match(r"agent worker registered id=(\S+)", line) for line in self.process.drain())
        return [m.group(1) for m in found if m]

    def registrations(self) -> int:
        return self.log().count("registered worker") if self.process else 0

    def ensure_registered(self, timeout: float = REGISTER_TIMEOUT_S) -> Worker:
        """Running and registered with the server as it is now (once per server start), else started again."""
        if self.process is None or self.process.proc.poll() is not None:
            return self.start()
        deadline = time.monotonic() + timeout
        while self.registrations() < self.server.starts - self._server_starts_at_start + 1:
            if self.process.proc.poll() is not None:
                return self.start()
            if time.monotonic() > deadline:
                self.stop()
                return self.start()
            time.sleep(0.2)
        return self

    def room(self, name: str) -> RoomRecording:
        return RoomRecording(self.record_dir / name)

    def kill(self) -> None:
        """SIGKILL: the worker and its job threads die at once (no goodbye to the room)."""
        if self.process is not None and self.process.proc.poll() is None:
            self.process.proc.kill()
            self.process.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=10)

    def log(self) -> str:
        return self.process.log_tail(100_000) if self.process else ""
