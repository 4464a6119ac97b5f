"""Which LiveKit node a device is sent to (pure): round-robin among the nodes whose last health probe passed.

The nodes are the configured URLs (the cluster's nodes, or one load balancer). A node starts unhealthy until its
first probe answers, so a fleet is never handed a node nobody has seen alive; none healthy means no answer
(the endpoint says 503 and why).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def health_url(node: str) -> str:
    """Where livekit-server answers "OK": the root of the node's HTTP side (ws → http, wss → https)."""
    parts = urlsplit(node)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "/", "", ""))


class NodePool:
    def __init__(self, nodes: tuple[str, ...]):
        self.nodes = nodes
        self._healthy = dict.fromkeys(nodes, False)
        self._next = 0

    def mark(self, node: str, healthy: bool) -> bool:
        """Record a probe's result; True when it changed the node's health."""
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
