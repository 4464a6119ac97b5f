"""Faults on the DEVICE's network, and evidence of where packets went, inside the test's namespace.

Server, agent worker and daemon share one namespace (both veth ends are in it), so their addresses cannot tell
the device's packets from the agent's. The daemon runs with its own group id instead (`DeviceSide`, gid
`DEVICE_GID`), and a permanent nftables rule tags every connection a socket of that group opens (`ct mark`):
the faults below match that tag, so they hit the device's connections — its signalling websocket, its ICE/RTP
flows, both directions — and never the agent's or the worker's. Everything lives in the namespace and goes with it.

- `cut()` / `restore(reset=…)`: drop every packet of the device's connections (a cable pulled). A silent cut
  shorter than the SDK's 15 s signal ping timeout goes unnoticed by the SDK (it neither reconnects nor loses the
  session); `restore(reset=True)` makes the way back like an access point or NAT that lost its state: the
  device's connections from before the cut are answered with a TCP reset, new ones pass. Then the SDK sees its
  websocket break on a network that works, and resumes.
- `loss(percent)`: drop that share of the device's packets at random (`numgen random`).
- `Delay`: hold each of the device's packets `ms` before letting it go, in userspace: the kernel here has neither
  `sch_netem` ("Specified qdisc kind is unknown") nor nftables' own `queue` expression ("Could not process rule:
  No such file or directory"), but it has the xtables NFQUEUE target, so an iptables rule hands the packets to
  `tests/livekit/delay_queue.py` (NetfilterQueue), which gives each its verdict `ms` later, in order.
- `Capture`: tcpdump on all of the namespace's interfaces; `foreign()` lists packets to or from any address
  outside the namespace's subnet and loopback (IPv6 link-scope chatter of the veths counts as inside).
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests import programs
from tests.stubsfu.netns import NetNs
from tests.wire.harness import ROOT, LineProcess

TAG_TABLE = "vdtag"  # permanent: marks the device's connections
TABLE = "vdfaults"  # the fault of the moment
DEVICE_GID = 4242  # the daemon's group id (DeviceSide)
DEVICE_MARK = 0x4242  # ct mark of a connection the device opened
OLD_MARK = 0x4243  # ct mark of a device connection that carried a packet during the cut
QUEUE_NUM = 13


class DeviceSide(NetNs):
    """The namespace as the daemon sees it: the same addresses, its processes under group `DEVICE_GID`."""

    @classmethod
    def of(cls, ns: NetNs) -> DeviceSide:
        return cls(name=ns.name, server_ip=ns.server_ip, client_ip=ns.client_ip)

    def command(self, argv: list[str]) -> list[str]:
        return super().command(["setpriv", f"--regid={DEVICE_GID}", "--clear-groups", *argv])


def _nft(ns: NetNs, script: str) -> None:
    subprocess.run(ns.command(["nft", "-f", "-"]), input=script, text=True, check=True, capture_output=True,
                   timeout=10)


def tools_missing() -> str | None:
    return programs.missing("nft", "tcpdump", "setpriv")


def tag_device_connections(ns: NetNs) -> None:
    """Before the hook's other chains: a connection whose first packet came from a device socket is the device's."""
    _nft(ns, f"""table inet {TAG_TABLE} {{
  chain out {{
    type filter hook output priority -10; policy accept;
    ct mark 0 meta skgid {DEVICE_GID} ct mark set {DEVICE_MARK}
  }}
}}
""")


def _replace(ns: NetNs, *rules: str) -> None:
    body = "\n    ".join(rules)
    _nft(ns, f"""table inet {TABLE} {{}}
delete table inet {TABLE}
table inet {TABLE} {{
  chain out {{
    type filter hook output priority 0; policy accept;
    {body}
  }}
}}
""")


def cut(ns: NetNs) -> None:
    """Every packet of the device's connections is dropped, both ways; each connection that tries is noted."""
    _replace(ns, f"ct mark {{ {DEVICE_MARK}, {OLD_MARK} }} ct mark set {OLD_MARK} counter drop")


def restore(ns: NetNs, *, reset: bool = False) -> None:
    """The link is back. `reset`: the device's connections that tried during the cut get a TCP reset (their
    state was lost on the way), and only those; without it every packet passes again."""
    if reset:
        # the resets this rule makes travel the same hook: let them through to the sockets
        _replace(ns, f"ct mark {OLD_MARK} tcp flags rst accept",
                 f"ct mark {OLD_MARK} meta l4proto tcp counter reject with tcp reset")
    else:
        clear(ns)


def loss(ns: NetNs, percent: int) -> None:
    _replace(ns, f"ct mark {{ {DEVICE_MARK}, {OLD_MARK} }} numgen random mod 100 < {percent} counter drop")


def clear(ns: NetNs) -> None:
    _nft(ns, f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")


def counted_packets(ns: NetNs) -> int:
    """Packets the current fault's rules matched (dropped or reset)."""
    out = subprocess.run(ns.command(["nft", "list", "table", "inet", TABLE]), capture_output=True, text=True,
                         timeout=10)
    return sum(int(n) for n in re.findall(r"counter packets (\d+)", out.stdout))


def delay_unavailable() -> str | None:
    if (sentence := programs.missing("iptables")) is not None:
        return f"{sentence}: the delay uses its NFQUEUE target"
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return "NetfilterQueue is not installed (scripts/setup.sh installs it; it builds on libnetfilter-queue-dev)"
    return None


@dataclass
class Delay:
    """Each packet of the device's connections waits `ms` in userspace (tests/livekit/delay_queue.py)."""

    ns: NetNs
    workdir: Path
    ms: int
    process: LineProcess | None = None

    def _rule(self, verb: str) -> list[str]:
        return self.ns.command(["iptables", verb, "OUTPUT", "-m", "connmark", "--mark", f"{DEVICE_MARK}",
                                "-j", "NFQUEUE", "--queue-num", str(QUEUE_NUM), "--queue-bypass"])

    def start(self) -> Delay:
        argv = self.ns.command([sys.executable, "-m", "tests.livekit.delay_queue", str(QUEUE_NUM), str(self.ms)])
        self.process = LineProcess(argv, self.workdir / "delay-queue.log")
        self.process.wait_line(lambda line: line.startswith("bound"), 15)
        subprocess.run(self._rule("-A"), check=True, capture_output=True, timeout=10, cwd=ROOT)
        return self

    def stop(self) -> int:
        """Remove the rule, let the queue drain, stop; returns how many packets were held."""
        subprocess.run(self._rule("-D"), capture_output=True, timeout=10)
        if self.process is None:
            return 0
        self.process.proc.terminate()
        self.process.wait(timeout=10)
        found = re.findall(r"^held (\d+)", "\n".join(self.process.lines), re.MULTILINE)
        return int(found[-1]) if found else 0


def _address(endpoint: str) -> str:
    """tcpdump's `10.231.5.1.7880` / `10.231.5.1` (ICMP: no port) / `fe80::1.5353` → the address alone."""
    try:
        return str(ipaddress.ip_address(endpoint))
    except ValueError:
        return str(ipaddress.ip_address(endpoint.rsplit(".", 1)[0]))


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
        self.packets = [(_address(m.group(1)), _address(m.group(2)))
                        for m in re.finditer(r"(?:^|\s)IP6? (\S+) > (\S+): ", text, re.MULTILINE)]
        return self.packets

    def foreign(self) -> list[tuple[str, str]]:
        subnet = ipaddress.ip_network(f"{self.ns.server_ip}/24", strict=False)

        def inside(address: str) -> bool:
            ip = ipaddress.ip_address(address)
            if ip.version == 6:
                # IPv6's own link chatter as the veths come up (neighbour discovery, MLD): link scope, so it
                # cannot leave the veth pair, whose both ends are in the namespace
                return ip.is_loopback or ip.is_link_local or ip.is_unspecified or str(ip).startswith("ff02:")
            return ip.is_loopback or ip in subnet

        return [(s, d) for s, d in self.packets if not (inside(s) and inside(d))]
