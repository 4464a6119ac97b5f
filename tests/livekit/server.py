"""The real `livekit-server` for the tests: its binary (built by scripts/livekit-server.sh), a config that keeps
every packet inside the test's network namespace, and a process the tests can kill (SIGKILL: no leave, no room
close) and start again.

Why each setting (checked against the server's sources, pkg/config and mediatransportutil/rtcconfig):
- `bind_addresses` / `rtc.node_ip` / `rtc.ips.includes`: HTTP/WS on the namespace's server address only, ICE
  host candidates for that address only (the client's veth end is the other address in the namespace).
- `turn` enabled on UDP at the node IP: the server then hands clients `turn:<node ip>:3478` as their only ICE
  server (UDP TURN doubles as STUN). With no STUN/TURN configured the server would hand out its public default
  STUN servers instead; with `node_ip` set it uses no STUN itself.
- `rtc.stun_servers` names the same local address, so no code path falls back to the public defaults.
- single node, no Redis (tests/cluster runs several nodes on one Redis: `redis`, each on its own address and
  ports); room `departure_timeout` short so a room left empty goes away within the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.stubsfu.netns import NetNs
from tests.wire.harness import ROOT, LineProcess, Owned

VERSION = "v1.13.5"
API_KEY = "devicetests"
API_SECRET = "voice-device-test-secret-0123456789abcdef"  # a test-only key pair, minted nowhere else
HTTP_PORT, TCP_PORT, UDP_PORT, TURN_PORT = 7880, 7881, 7882, 3478
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Ports:
    """A node's ports; a second node in the same namespace shifts them all (`Ports.shifted(10)`)."""

    http: int = HTTP_PORT
    tcp: int = TCP_PORT
    udp: int = UDP_PORT
    turn: int = TURN_PORT
    relay_start: int = 30000

    def shifted(self, by: int) -> Ports:
        return Ports(self.http + by, self.tcp + by, self.udp + by, self.turn + by, self.relay_start + 10 * by)


def binary_path() -> Path:
    override = os.environ.get("VOICE_DEVICE_LIVEKIT_SERVER")
    return Path(override) if override else ROOT / ".cache" / "livekit-server" / VERSION / "server"


def unavailable_reason() -> str | None:
    """Why the real server cannot run here (None when it can)."""
    binary = binary_path()
    if binary.is_file() and os.access(binary, os.X_OK):
        return None
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        return (f"livekit-server {VERSION} is not built and Go is not installed: scripts/livekit-server.sh builds it "
                "with `go install` (Go >= 1.26)")
    return f"livekit-server {VERSION} is not built yet: run scripts/livekit-server.sh (or scripts/setup.sh)"


def server_config(ip: str, *, ports: Ports = Ports(), redis: str | None = None,
                  departure_timeout_s: int = 3) -> dict[str, object]:
    """One node at `ip`; with `redis` (HOST:PORT) a node of the cluster sharing that Redis."""
    config: dict[str, object] = {
        "port": ports.http,
        "bind_addresses": [ip],
        "keys": {API_KEY: API_SECRET},
        "rtc": {
            "tcp_port": ports.tcp,
            "udp_port": ports.udp,
            "node_ip": ip,
            "use_external_ip": False,
            "enable_loopback_candidate": False,
            "stun_servers": [f"{ip}:{ports.turn}"],
            "ips": {"includes": [f"{ip}/32"]},
        },
        "turn": {"enabled": True, "udp_port": ports.turn, "bind_addresses": [ip],
                 "relay_range_start": ports.relay_start, "relay_range_end": ports.relay_start + 100},
        "room": {"auto_create": True, "departure_timeout": departure_timeout_s, "empty_timeout": 30},
        "logging": {"level": "info", "json": False},
    }
    if redis is not None:
        config["redis"] = {"address": redis}
    return config


@dataclass
class Server(Owned):
    """A node: by default the namespace's server address and the standard ports, alone; `name` tells a cluster's
    nodes apart in file names."""

    ns: NetNs
    workdir: Path
    process: LineProcess | None = None
    starts: int = 0
    ip: str = ""
    ports: Ports = Ports()
    redis: str | None = None
    name: str = "livekit-server"

    def __post_init__(self) -> None:
        self.ip = self.ip or self.ns.server_ip

    @property
    def url(self) -> str:
        return f"ws://{self.ip}:{self.ports.http}"

    @property
    def http_url(self) -> str:
        return f"http://{self.ip}:{self.ports.http}"

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.yaml"

    def start(self) -> Server:
        config = server_config(self.ip, ports=self.ports, redis=self.redis)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.starts += 1
        argv = self.ns.command([str(binary_path()), "--config", str(self.config_path)])
        self.process = LineProcess(argv, self.workdir / f"{self.name}-{self.starts}.log")
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert self.process is not None
            if self.process.proc.poll() is not None:
                raise AssertionError(f"livekit-server exited rc={self.process.proc.returncode}:\n"
                                     f"{self.process.log_tail(30)}")
            if self.healthy():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"livekit-server did not answer within {READY_TIMEOUT_S} s:\n"
                                     f"{self.process.log_tail(30)}")
            time.sleep(0.2)

    def healthy(self) -> bool:
        """GET / inside the namespace (curl-free: a one-line python in the namespace)."""
        probe = self.ns.command(["python3", "-c",
                                 f"import urllib.request;print(urllib.request.urlopen({self.http_url!r}, "
                                 "timeout=2).read().decode())"])
        try:
            out = subprocess.run(probe, capture_output=True, text=True, timeout=5)
        except subprocess.TimeoutExpired:
            return False
        return out.returncode == 0 and out.stdout.strip() == "OK"


    def admin(self, verb: str, *args: str, timeout: float = 30.0) -> str:
        """tests/livekit/admin.py inside the namespace: the server API, or a one-off join."""
        argv = self.ns.command([sys.executable, "-m", "tests.livekit.admin", self.url, verb, *args])
        out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise AssertionError(f"admin {verb} failed rc={out.returncode}: {out.stderr[-2000:]}")
        return out.stdout.strip().splitlines()[-1]


__all__ = ["API_KEY", "API_SECRET", "Ports", "Server", "binary_path", "server_config", "unavailable_reason"]
