"""A throwaway network namespace with a veth pair, so libwebrtc (which ignores loopback) finds an interface.

Both veth ends live inside the namespace, both up, addresses 10.231.N.1/24 and 10.231.N.2/24, plus `lo` up:
no traffic leaves it. `NetNs.command(argv)` prefixes `ip netns exec NAME`, so any process (the stub, an SDK
client, the daemon) can run inside. Needs root (CAP_NET_ADMIN); `NetNs.create` raises NetNsUnavailable with
the reason otherwise.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass


class NetNsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no `ip`, or the kernel refused)."""


@dataclass
class NetNs:
    name: str
    server_ip: str
    client_ip: str

    @classmethod
    def create(cls, prefix: str = "vdwire") -> NetNs:
        if os.geteuid() != 0:
            raise NetNsUnavailable("network namespaces need root (libwebrtc ignores loopback, so the wire tests "
                                   "need a veth pair in a namespace); run the tests as root")
        octet = 1 + secrets.randbelow(250)
        name = f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
        ns = cls(name=name, server_ip=f"10.231.{octet}.1", client_ip=f"10.231.{octet}.2")
        steps = [
            ["ip", "netns", "add", name],
            ["ip", "-n", name, "link", "add", "va", "type", "veth", "peer", "name", "vb"],
            ["ip", "-n", name, "addr", "add", f"{ns.server_ip}/24", "dev", "va"],
            ["ip", "-n", name, "addr", "add", f"{ns.client_ip}/24", "dev", "vb"],
            ["ip", "-n", name, "link", "set", "va", "up"],
            ["ip", "-n", name, "link", "set", "vb", "up"],
            ["ip", "-n", name, "link", "set", "lo", "up"],
        ]
        for step in steps:
            try:
                result = subprocess.run(step, capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired) as e:
                ns.delete()
                raise NetNsUnavailable(f"`{' '.join(step)}` failed: {e}") from e
            if result.returncode != 0:
                ns.delete()
                raise NetNsUnavailable(f"`{' '.join(step)}` failed: {result.stderr.strip()}")
        return ns

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
