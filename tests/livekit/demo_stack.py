"""The demo's local real stack: livekit-server (when scripts/livekit-server.sh has built it) and the test agent
worker (tests/livekit/agent, named demo-agent, built on the companion voice_device_agent: push-to-talk RPCs for a
push-to-talk device, its own voice detection for a wake-word demo, as the device's mode says) in a private network
namespace. With `record`, the agent writes what it heard to `record/session-N/` as each session ends.

`RealStack.available()` says why not when it cannot run (no root for the namespace, no server binary, no agent
virtualenv); scripts/demo then falls back to the stub SFU and says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.livekit.server import API_KEY, API_SECRET, Server, unavailable_reason
from tests.livekit.worker_proc import Worker, agent_unavailable_reason
from tests.stubsfu.netns import NetNs

AGENT_NAME = "demo-agent"


class RealStack:
    def __init__(self, logs: Path, *, record: Path | None = None) -> None:
        self.logs = logs
        self.record = record
        self.netns: NetNs | None = None
        self.server: Server | None = None
        self.worker: Worker | None = None

    @staticmethod
    def unavailable() -> str | None:
        if os.geteuid() != 0:
            return "not root (the real server runs in a private network namespace)"
        return unavailable_reason() or agent_unavailable_reason()

    def open(self) -> dict[str, str]:
        """Start both; returns the environment that points the daemon at them."""
        self.netns = NetNs.create(prefix="vddemo")
        self.server = Server(self.netns, self.logs).start()
        self.worker = Worker(self.server, self.logs, AGENT_NAME, export=self.record).start()
        return {"LIVEKIT_URL": self.server.url, "LIVEKIT_API_KEY": API_KEY, "LIVEKIT_API_SECRET": API_SECRET,
                "VOICE_DEVICE_AGENT": AGENT_NAME}

    def command(self, argv: list[str]) -> list[str]:
        assert self.netns is not None
        return self.netns.command(argv)

    def close(self) -> None:
        for step in (self.worker, self.server):
            if step is not None:
                step.stop()
        if self.netns is not None:
            self.netns.delete()
            self.netns = None
