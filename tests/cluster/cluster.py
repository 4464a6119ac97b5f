"""A LiveKit cluster inside one network namespace: Debian's `redis-server` on the namespace's loopback and
`NODES` livekit-server nodes of the pinned build sharing it, each on its own address of the namespace's server-side
veth end and its own ports (tests/livekit/server.py `Ports.shifted`), so a node's death takes exactly its own
sockets with it.

With Redis the nodes route for each other: a participant may join through any node and the room lives on one of
them (the signal is relayed over Redis/psrpc; the media goes to the hosting node's address, which its ICE
candidates name). Agent workers register with the node they connect to; the cluster dispatches a room's agent to a
worker on any node.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests import programs
from tests.livekit.server import Ports, Server
from tests.stubsfu.netns import NetNs
from tests.wire.harness import LineProcess, Owned

REDIS_PORT = 6379
NODES = 2
READY_TIMEOUT_S = 20.0


def unavailable_reason() -> str | None:
    return programs.missing("redis-server", "redis-cli")


def node_address(ns: NetNs, index: int) -> str:
    """Node 0 on the namespace's server address (10.231.N.1), node i on 10.231.N.(2+i) (the client end is .2)."""
    if index == 0:
        return ns.server_ip
    return ns.server_ip.rsplit(".", 1)[0] + f".{2 + index}"


def add_address(ns: NetNs, ip: str) -> None:
    subprocess.run(ns.command(["ip", "addr", "add", f"{ip}/24", "dev", "va"]), check=True, capture_output=True,
                   timeout=10)


@dataclass
class Redis(Owned):
    ns: NetNs
    workdir: Path
    process: LineProcess | None = None
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{REDIS_PORT}"

    def start(self) -> Redis:
        """A memory-only Redis (no snapshot, no AOF): a restart forgets every room and node, as a crash would."""
        self.starts += 1
        argv = self.ns.command(["redis-server", "--bind", "127.0.0.1", "--port", str(REDIS_PORT), "--save", "",
                                "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "notice"])
        self.process = LineProcess(argv, self.workdir / f"redis-{self.starts}.log")
        self.process.wait_line(lambda line: "Ready to accept connections" in line, READY_TIMEOUT_S)
        return self

    def cli(self, *args: str) -> str:
        out = subprocess.run(self.ns.command(["redis-cli", "-p", str(REDIS_PORT), *args]), capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip()



@dataclass
class Cluster:
    ns: NetNs
    workdir: Path
    redis: Redis
    nodes: list[Server] = field(default_factory=list)

    @classmethod
    def start(cls, ns: NetNs, workdir: Path, count: int = NODES) -> Cluster:
        redis = Redis(ns, workdir).start()
        cluster = cls(ns, workdir, redis)
        for i in range(count):
            ip = node_address(ns, i)
            if i:
                add_address(ns, ip)
            node = Server(ns, workdir, ip=ip, ports=Ports().shifted(10 * i), redis=redis.address, name=f"node-{i}")
            cluster.nodes.append(node.start())
        return cluster

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node_of(self, url: str) -> Server:
        return next(node for node in self.nodes if node.url == url)

    def host_of(self, room: str, timeout: float = 15.0) -> Server:
        """The node the room lives on now: the last whose log shows an RTC session starting in it (a room placed
        again after its node died keeps its name)."""
        return self._last_logged(room, "starting RTC session", timeout)

    def signal_node_of(self, room: str, timeout: float = 15.0) -> Server:
        """The node the room's latest placement came through — its first participant's signal node: the one
        whose log says "selected node for room"; the signal is relayed from there to the host."""
        return self._last_logged(room, "selected node for room", timeout)

    def worker_id_of(self, room: str, timeout: float = 15.0) -> str:
        """The id of the agent worker the cluster gave the room's latest job (`AW_…`, as its worker printed)."""
        node = self._last_logged(room, "assigned job to worker", timeout)
        found = re.findall(rf"assigned job to worker.*\"room\": \"{re.escape(room)}\".*?\"workerID\": \"(\w+)\"",
                           node.log())
        return str(found[-1])

    def _last_logged(self, room: str, message: str, timeout: float) -> Server:
        pattern = re.compile(rf"^(\S+)\s.*{re.escape(message)}.*\"room\": \"{re.escape(room)}\"", re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            stamps = [(max(m.group(1) for m in found), node) for node in self.nodes
                      if (found := list(pattern.finditer(node.log())))]
            if stamps:
                return max(stamps, key=lambda pair: pair[0])[1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no node logged {message!r} for room {room}")
            time.sleep(0.2)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.redis.stop()
