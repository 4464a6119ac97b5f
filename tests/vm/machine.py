"""A booted appliance: qemu (software emulation) in a network namespace of its own, driven over virtio serial.

`Machine.boot(image, workdir)` makes the namespace (a tap whose host side is 10.232.0.1; the guest is
10.232.0.2; nothing routes beyond it, so the VM reaches this namespace and nothing else), starts qemu on a
snapshot of the cached disk (writes vanish with the process, guest reboots keep them) and waits for the
guest agent's greeting. `run`/`sh` execute in the guest as root; `set_link` pulls the virtual cable through
QMP (the guest sees the carrier go); `reboot` waits for the next boot's greeting. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shlex
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.stubsfu.netns import NetNs

HOST_IP, GUEST_IP = "10.232.0.1", "10.232.0.2"
BOOT_TIMEOUT_S = 300.0  # software emulation on a shared 2-core machine: ~25 s alone, much more under load


@dataclass(frozen=True)
class Board:
    """What qemu emulates for one architecture of the appliance's image."""

    qemu: str  # the program
    machine: tuple[str, ...]  # its board, accelerator and CPU
    console: str  # the kernel's serial console there


# Both are software emulation (TCG): this machine has no virtualisation for either. arm64: qemu's `virt` board with
# a Cortex-A72, the Pi 4's core (qemu has no Pi 4 machine); its console is the PL011 UART.
BOARDS = {
    "amd64": Board("qemu-system-x86_64", ("-accel", "tcg", "-cpu", "max"), "ttyS0"),
    "arm64": Board("qemu-system-aarch64", ("-M", "virt", "-accel", "tcg,thread=multi", "-cpu", "cortex-a72"),
                   "ttyAMA0"),
}


class MachineError(RuntimeError):
    """The VM could not be started or stopped answering; the message says where its console log is."""


@dataclass
class Result:
    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    error: str = ""

    def check(self) -> Result:
        if self.rc != 0:
            raise AssertionError(f"in the VM, {shlex.join(self.argv)} exited {self.rc} {self.error}\n"
                                 f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}")
        return self


def make_netns() -> NetNs:
    """A namespace holding only `lo` and the VM's tap; raises NetNsUnavailable-like MachineError on refusal."""
    name = f"vdvm-{os.getpid()}-{secrets.token_hex(3)}"
    ns = NetNs(name=name, server_ip=HOST_IP, client_ip=GUEST_IP)
    steps = [["ip", "netns", "add", name],
             ["ip", "-n", name, "tuntap", "add", "dev", "tap0", "mode", "tap"],
             ["ip", "-n", name, "addr", "add", f"{HOST_IP}/24", "dev", "tap0"],
             ["ip", "-n", name, "link", "set", "tap0", "up"],
             ["ip", "-n", name, "link", "set", "lo", "up"]]
    for step in steps:
        r = subprocess.run(step, capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            ns.delete()
            raise MachineError(f"`{shlex.join(step)}` failed: {r.stderr.strip()}")
    return ns


def _die_with_parent() -> None:
    """In the child before exec (`ip netns exec` then execs qemu in the same process): SIGKILL when the test
    process dies, however it dies, so no VM outlives its tests and starves what CI runs next."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Machine:
    def __init__(self, image: Path, workdir: Path, netns: NetNs, arch: str = "amd64") -> None:
        self.image = image
        self.arch = arch
        self.workdir = workdir
        self.netns = netns
        self.console = workdir / "console.log"
        self._agent_path = workdir / "agent.sock"
        self._qmp_path = workdir / "qmp.sock"
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._agent: socket.socket | None = None
        self._qemu: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.boot_id = ""
        self.boots: list[float] = []  # seconds from qemu's start (or the reboot request) to the agent's greeting

    # ---- start and stop ------------------------------------------------------------------------------------

    @classmethod
    def boot(cls, image: Path, workdir: Path, arch: str = "amd64") -> Machine:
        netns = make_netns()
        machine = cls(image, workdir, netns, arch)
        try:
            machine._start()
        except BaseException:
            machine.close()
            raise
        return machine

    def qemu_argv(self) -> list[str]:
        board = BOARDS[self.arch]
        return [
            board.qemu, *board.machine, "-smp", "2", "-m", "1536",
            "-nodefaults", "-no-user-config", "-display", "none", "-serial", f"file:{self.console}",
            "-kernel", str(self.image / "vmlinuz"), "-initrd", str(self.image / "initrd.img"),
            "-append", f"root=/dev/vda rw console={board.console} net.ifnames=0 panic=-1",
            "-drive", f"file={self.image / 'disk.img'},format=raw,if=virtio,snapshot=on",
            "-object", "rng-random,id=rng,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng",
            "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
            "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:0d:0e:01",
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=agent,path={self._agent_path},server=on,wait=off",
            "-device", "virtserialport,chardev=agent,name=vd.agent",
            "-qmp", f"unix:{self._qmp_path},server=on,wait=off",
        ]

    def _start(self) -> None:
        started = time.monotonic()
        log = (self.workdir / "qemu.log").open("wb")
        self._qemu = subprocess.Popen(self.netns.command(self.qemu_argv()), stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + 30
        while not self._agent_path.exists():
            if self._qemu.poll() is not None or time.monotonic() > deadline:
                raise MachineError(f"qemu did not start: {(self.workdir / 'qemu.log').read_text()[-2000:]}")
            time.sleep(0.05)
        self._agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._agent.connect(str(self._agent_path))
        threading.Thread(target=self._read_agent, daemon=True).start()
        self._wait_hello(started)

    def _read_agent(self) -> None:
        assert self._agent is not None
        buffer = b""
        while True:
            try:
                chunk = self._agent.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                self._lines.put(None)
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                with contextlib.suppress(ValueError):
                    self._lines.put(json.loads(line))

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            message = self._lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            raise MachineError(f"the VM did not answer within {timeout:.0f} s; console: {self.console}") from None
        if message is None:
            raise MachineError(f"the VM's channel closed (qemu exited?); console: {self.console}")
        return message

    def _wait_hello(self, since: float) -> None:
        deadline = since + BOOT_TIMEOUT_S
        while True:
            message = self._next(deadline - time.monotonic())
            if "hello" in message and message["hello"] != self.boot_id:
                self.boot_id = message["hello"]
                self.boots.append(time.monotonic() - since)
                return

    def close(self) -> None:
        """Power off (bounded), then make sure qemu and the namespace are gone."""
        if self._qemu is not None and self._qemu.poll() is None:
            with contextlib.suppress(Exception):
                self._send({"argv": ["systemctl", "poweroff", "--no-block"], "timeout": 10})
            try:
                self._qemu.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._qemu.kill()
                self._qemu.wait(timeout=10)
        if self._agent is not None:
            self._agent.close()
        self.netns.delete()

    # ---- commands ----------------------------------------------------------------------------------------------

    def _send(self, request: dict[str, Any]) -> None:
        assert self._agent is not None
        self._agent.sendall((json.dumps(request) + "\n").encode())

    def run(self, argv: list[str], timeout: float = 60, stdin: str | None = None) -> Result:
        with self._lock:
            self._send({"argv": argv, "timeout": timeout, "stdin": stdin})
            deadline = time.monotonic() + timeout + 30
            while True:
                reply = self._next(deadline - time.monotonic())
                if "hello" in reply:  # the guest rebooted under us: that command's answer is lost
                    self.boot_id = reply["hello"]
                    raise MachineError(f"the VM rebooted while running {shlex.join(argv)}")
                return Result(argv, int(reply["rc"]), reply.get("stdout", ""), reply.get("stderr", ""),
                              reply.get("error", ""))

    def sh(self, script: str, timeout: float = 60, check: bool = True) -> Result:
        r = self.run(["bash", "-c", script], timeout=timeout)
        return r.check() if check else r

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        self.run(["bash", "-c", f'umask 077; cat > {shlex.quote(path)} && chmod {mode} {shlex.quote(path)}'],
                 stdin=text).check()

    def reboot(self) -> float:
        """Reboot the guest (same qemu, same snapshot) and return how long until its agent greeted again."""
        with self._lock:
            since = time.monotonic()
            self._send({"argv": ["systemctl", "reboot", "--no-block"], "timeout": 10})
            self._wait_hello(since)
        return self.boots[-1]

    # ---- the virtual cable -----------------------------------------------------------------------------------

    def set_link(self, up: bool) -> None:
        qmp = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        qmp.settimeout(10)
        try:
            qmp.connect(str(self._qmp_path))
            stream = qmp.makefile("rwb")
            stream.readline()  # greeting
            for command in ({"execute": "qmp_capabilities"},
                            {"execute": "set_link", "arguments": {"name": "n0", "up": up}}):
                stream.write((json.dumps(command) + "\n").encode())
                stream.flush()
                while True:
                    reply = json.loads(stream.readline())
                    if "return" in reply:
                        break
                    if "error" in reply:
                        raise MachineError(f"qmp {command['execute']}: {reply['error']}")
        finally:
            qmp.close()
