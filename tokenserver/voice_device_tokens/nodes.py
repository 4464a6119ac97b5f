"""Which LiveKit node a device is sent to (pure): round-robin among the nodes that pass their health probe.

The nodes are the configured URLs (the cluster's nodes, or one load balancer). A node starts unhealthy until its
first probe answers, so a fleet is never handed a node nobody has seen alive; none healthy means no answer
(the endpoint says 503 and why). A node that refuses the probe or answers anything but "OK" is out at once (a
killed node refuses at once); one that does not answer in time keeps its health for one probe and is out at the
second in a row, so a moment of load on a busy two-core machine does not take a live node out of the rotation.
"""

from __future__ import annotations

from enum import Enum
from urllib.parse import urlsplit, urlunsplit


class Probe(Enum):
    OK = "ok"
    FAILED = "failed"  # refused, or an answer that is not 200 "OK"
    TIMED_OUT = "timed-out"


def health_url(node: str) -> str:
    """Where livekit-server answers "OK": the root of the node's HTTP side (ws → http, wss → https)."""
    parts = urlsplit(node)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "/", "", ""))


class NodePool:
    def __init__(self, nodes: tuple[str, ...]):
        self.nodes = nodes
        self._healthy = dict.fromkeys(nodes, False)
        self._timeouts = dict.fromkeys(nodes, 0)
        self._next = 0

    def mark(self, node: str, probe: Probe) -> bool:
        """Record a probe's result; True when it changed the node's health."""
        self._timeouts[node] = self._timeouts[node] + 1 if probe is Probe.TIMED_OUT else 0
        healthy = probe is Probe.OK or (probe is Probe.TIMED_OUT and self._timeouts[node] < 2 and self._healthy[node])
        changed = self._healthy[node] != healthy
        self._healthy[node] = healthy
        return changed

    def healthy(self) -> list[str]:
        return [node for node in self.nodes if self._healthy[node]]

    def choose(self) -> str | None:
        """The next healthy node in turn, or None when no node is healthy."""
        for i in range(len(self.nodes)):
            node = self.nodes[(self._next + i) % len(self.nodes)]
            if self._healthy[node]:
                self._next = (self._next + i + 1) % len(self.nodes)
                return node
        return None
