"""Faults and evidence on the namespace's network, with nftables inside the namespace (the kernel has no
`sch_netem` here, so loss comes from nftables' `numgen random`; see README "Testing").

Both veth ends are in the one namespace, so client → server packets go through the kernel's local path: a rule
in the `output` hook sees every packet either side sends. Everything is scoped to the namespace and goes away
with it.

- `cut()` / `restore()`: drop every packet between the two veth addresses (a cable pulled, both ways).
- `loss(percent)`: drop that share of those packets at random.
- `Capture`: tcpdump on all of the namespace's interfaces; `foreign()` lists packets to or from any address
  outside the namespace's subnet and loopback.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.stubsfu.netns import NetNs

TABLE = "vdfaults"


def _nft(ns: NetNs, script: str) -> None:
    subprocess.run(ns.command(["nft", "-f", "-"]), input=script, text=True, check=True, capture_output=True,
                   timeout=10)


def tools_missing() -> str | None:
    missing = [t for t in ("nft", "tcpdump") if shutil.which(t) is None]
    return f"{' and '.join(missing)} not installed (scripts/setup.sh installs them)" if missing else None


def _between(ns: NetNs) -> str:
    return f"ip saddr {{ {ns.server_ip}, {ns.client_ip} }} ip daddr {{ {ns.server_ip}, {ns.client_ip} }}"


def _replace(ns: NetNs, rule: str) -> None:
    _nft(ns, f"""table inet {TABLE} {{}}
delete table inet {TABLE}
table inet {TABLE} {{
  chain out {{
    type filter hook output priority 0; policy accept;
    {rule}
  }}
}}
""")


def cut(ns: NetNs) -> None:
    """Nothing passes; TCP is answered with a reset, so the signalling websocket breaks at its next ping (the SDK
    then resumes; a silent drop alone goes unnoticed by the SDK for a cut shorter than its 15 s ping timeout)."""
    _replace(ns, f"{_between(ns)} meta l4proto tcp counter reject with tcp reset\n    {_between(ns)} counter drop")


def loss(ns: NetNs, percent: int) -> None:
    _replace(ns, f"{_between(ns)} numgen random mod 100 < {percent} counter drop")


def restore(ns: NetNs) -> None:
    _nft(ns, f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")


def dropped_packets(ns: NetNs) -> int:
    out = subprocess.run(ns.command(["nft", "list", "table", "inet", TABLE]), capture_output=True, text=True,
                         timeout=10)
    return sum(int(n) for n in re.findall(r"counter packets (\d+)", out.stdout))


@dataclass
class Capture:
    ns: NetNs
    path: Path
    proc: subprocess.Popen[bytes] | None = None
    packets: list[tuple[str, str]] = field(default_factory=list)

    def start(self) -> Capture:
        self.proc = subprocess.Popen(self.ns.command(["tcpdump", "-i", "any", "-n", "-U", "-w", str(self.path)]),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def stop(self) -> list[tuple[str, str]]:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        text = subprocess.run(["tcpdump", "-r", str(self.path), "-n", "-q", "-t"], capture_output=True, text=True,
                              timeout=120).stdout
        self.packets = [(m.group(1), m.group(2)) for m in re.finditer(
            r"IP6? (\S+?)(?:\.\d+)? > (\S+?)(?:\.\d+)?: ", text)]
        return self.packets

    def foreign(self) -> list[tuple[str, str]]:
        subnet = ipaddress.ip_network(f"{self.ns.server_ip}/24", strict=False)

        def inside(address: str) -> bool:
            ip = ipaddress.ip_address(address)
            return ip.is_loopback or ip in subnet

        return [(s, d) for s, d in self.packets if not (inside(s) and inside(d))]
