"""The fleet's token endpoint in the rig: the repository's reference program (`tokenserver/`, `voice-device-tokens`)
serving inside the cluster's namespace on its loopback (plain HTTP is allowed there by the device: localhost), with
the cluster's node URLs, one group per product, and devices enrolled with their own credentials.

A device's config is the product's, pointed at it the way an enrolled device's env file does
(`VOICE_DEVICE_TOKEN_ENDPOINT`, `VOICE_DEVICE_CREDENTIAL` → `livekit.endpoint` and its Bearer header).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.livekit.server import API_KEY, API_SECRET
from tests.stubsfu.netns import NetNs
from tests.wire.harness import ROOT, LineProcess, Owned

PORT = 8780
PATH = "/voice-device"
GROUPS = {"kiosks": "vd-agent", "speakers": "vd-agent", "appliances": "vd-agent"}
READY_TIMEOUT_S = 30.0


@dataclass
class TokenEndpoint(Owned):
    ns: NetNs
    workdir: Path
    nodes: list[str]
    health_interval_s: float = 1.0
    process: LineProcess | None = None
    starts: int = 0
    credentials: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{PORT}{PATH}"

    @property
    def store(self) -> Path:
        return self.workdir / "devices.sqlite"

    @property
    def config_path(self) -> Path:
        return self.workdir / "tokens.yaml"

    def write_config(self) -> None:
        config: dict[str, Any] = {
            "listen": {"host": "127.0.0.1", "port": PORT},
            "path": PATH,
            "store": str(self.store),
            "livekit": {"nodes": list(self.nodes), "api_key": API_KEY, "health_interval_s": self.health_interval_s},
            "groups": {name: {"agent_name": agent} for name, agent in GROUPS.items()},
            # a test presses often: the limits of a fleet would refuse a test's third session in a minute
            "rate_limits": {"per_device": {"burst": 50, "per_minute": 600}},
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self) -> TokenEndpoint:
        self.write_config()
        self.starts += 1
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "LIVEKIT_API_SECRET": API_SECRET}
        argv = self.ns.command([sys.executable, "-m", "voice_device_tokens", "serve", "--config",
                                str(self.config_path)])
        self.process = LineProcess(argv, self.workdir / f"tokens-{self.starts}.log", env=env)
        self.process.wait_line(lambda line: line.startswith("listening on"), READY_TIMEOUT_S)
        return self

    def enrol(self, device: str, group: str) -> dict[str, str]:
        """`voice-device-tokens enrol`: the device's env file lines, as a mapping."""
        out = subprocess.run([sys.executable, "-m", "voice_device_tokens", "enrol", "--store", str(self.store),
                              "--device", device, "--group", group, "--endpoint", self.url],
                             cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
        lines = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        self.credentials[device] = lines["VOICE_DEVICE_CREDENTIAL"]
        return lines

    def livekit_section(self, device: str, group: str) -> dict[str, Any]:
        """The `livekit:` section of an enrolled device's config (what the products' profiles make of its env)."""
        if device not in self.credentials:
            self.enrol(device, group)
        return {"token_source": "endpoint", "endpoint": self.url,
                "endpoint_headers": {"Authorization": f"Bearer {self.credentials[device]}"},
                "agent_name": GROUPS[group], "url": None, "api_key": None, "api_secret": None}

    def rotate(self, nodes: list[str]) -> None:
        """The nodes it hands out from now on (an operator taking one out of rotation, or putting it back): its
        configuration rewritten and the program started again on the same store — instances hold no state."""
        self.nodes = list(nodes)
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the endpoint accepts connections (the kernel's backlog) and answers nothing — a slow one."""
        assert self.process is not None
        os.kill(self.process.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.proc.pid, signal.SIGCONT)

    def stop(self, grace: float = 10.0) -> None:
        if self.alive():
            self.resume()  # a paused program cannot take its SIGTERM
        super().stop(grace)
