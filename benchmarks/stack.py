"""The bench the daemon benchmarks run on: a private virtual audio rig, a network namespace holding the stub SFU
and its scripted agent, and the real daemon (`voice-device run --simulate`) as systemd would start it.

    with Bench() as bench:
        stub = bench.stub("--agent-delay", "0.5", "--ptt")
        daemon = bench.daemon(bench.config(stub.url))       # inside the namespace, notify socket recorded
        bench.session(daemon, speech_wav)                   # press, speak, release, agent answers, end

Built from the test harnesses (tests/wire, tests/proof) so benchmarks and tests drive the daemon the same way.
Needs root (network namespaces), PulseAudio, espeak-ng and sox, like the wire tests.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.audio_path import start_rig, stop_rig
from tests.polling import wait_for as wait_until
from tests.proof.harness import DaemonProcess, write_config
from tests.stubsfu.netns import NetNs
from tests.wire.harness import Stub, launch_stub
from tests.wire.rig import play_into_mic
from tests.wire.signals import speech, write_wav


def tree_pids(pid: int) -> list[int]:
    """The process and all its descendants (the daemon and its session processes)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def _one(pid: int) -> dict[str, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "rss_bytes": int(status["VmRSS"].split()[0]) * 1024,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"]),
        "cpu_s": (int(fields[11]) + int(fields[12])) / ticks,  # utime, stime
        "reaped_cpu_s": (int(fields[13]) + int(fields[14])) / ticks,  # cutime, cstime: children waited for
    }


def proc_stats(pid: int) -> dict[str, float]:
    """RSS (bytes), open fds, threads and CPU seconds (user + system, all threads) of a process and everything it
    started (the daemon runs each session in a child process): summed over the live tree, plus the CPU of
    children already reaped. `processes` counts the tree; `daemon_*` are the first process alone."""
    root = _one(pid)
    total: dict[str, float] = {"rss_bytes": 0, "fds": 0, "threads": 0, "cpu_s": root["reaped_cpu_s"]}
    processes = 0
    for p in tree_pids(pid):
        try:
            one = root if p == pid else _one(p)
        except (OSError, KeyError):
            continue  # exited meanwhile
        processes += 1
        for key in ("rss_bytes", "fds", "threads", "cpu_s"):
            total[key] += one[key]
    total["processes"] = processes
    total["daemon_rss_bytes"] = root["rss_bytes"]
    total["daemon_fds"] = root["fds"]
    total["daemon_threads"] = root["threads"]
    return total


def footprint_bytes(pids: list[int]) -> int:
    """Resident memory of these processes with every physical page counted once (root: /proc/PID/pagemap gives
    page frame numbers). Summed RSS counts each page shared between them (the interpreter, numpy, the livekit
    library, which the daemon and its session process both map) once per process; this is what they take from
    the machine together (pages shared with processes outside the set count too)."""
    frames: set[int] = set()
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
            pagemap = open(f"/proc/{pid}/pagemap", "rb")  # noqa: SIM115 - closed below
        except OSError:
            continue
        with pagemap:
            for line in maps:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                if line.endswith("[vsyscall]"):
                    continue
                pagemap.seek(lo // page * 8)
                data = pagemap.read((hi - lo) // page * 8)
                for (entry,) in struct.iter_unpack("=Q", data):
                    if entry >> 63 and entry & ((1 << 55) - 1):  # present, with a frame number (root)
                        frames.add(entry & ((1 << 55) - 1))
    return len(frames) * page


def cpu_percent(pid: int, seconds: float) -> float:
    """% of one core the process (and its children) used over the next `seconds` of wall time."""
    return cpu_percents([pid], seconds)[0]


def cpu_percents(pids: list[int], seconds: float) -> list[float]:
    """`cpu_percent` of several process trees over the same window (e.g. a client and the sound server)."""
    a, t0 = [proc_stats(p)["cpu_s"] for p in pids], time.monotonic()
    time.sleep(seconds)
    b, wall = [proc_stats(p)["cpu_s"] for p in pids], time.monotonic() - t0
    return [100.0 * (y - x) / wall for x, y in zip(a, b, strict=True)]


def _press_latencies(daemon: DaemonProcess) -> list[int]:
    return list(daemon.snapshot()["metrics"]["press_to_listening_recent_ms"])


class Bench:
    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="vd-bench-"))
        self.env: dict[str, str] = {}
        self._rig_dir: str | None = None
        self.netns: NetNs | None = None
        self._stubs: list[Stub] = []
        self._daemons: list[DaemonProcess] = []

    def __enter__(self) -> Bench:
        env, self._rig_dir = start_rig({k: v for k, v in os.environ.items() if k != "PULSE_SERVER"})
        self.env = env
        self.pulse_server = env["PULSE_SERVER"]
        assert self._rig_dir is not None, "the bench runs its own sound server"
        self.pulse_pid = int((Path(self._rig_dir) / "pulseaudio.pid").read_text())
        self.netns = NetNs.create(prefix="vdbench")
        return self

    def __exit__(self, *exc: object) -> None:
        for d in self._daemons:
            d.close()
        for s in self._stubs:
            s.process.stop()
        if self.netns is not None:
            self.netns.delete()
        stop_rig(self.env, self._rig_dir)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def speech_wav(self, text: str, name: str, **kwargs: Any) -> Path:
        return write_wav(self.workdir / f"{name}.wav", speech(text, **kwargs))

    def stub(self, *args: str) -> Stub:
        assert self.netns is not None
        stub = launch_stub(self.netns, self.workdir, *args)
        self._stubs.append(stub)
        return stub

    def config(self, url: str, *, dsp: bool = True, **session: Any) -> dict[str, Any]:
        """A push-to-talk config for the stub (local tokens, devkey/secret); `dsp=False` turns the echo canceller,
        noise suppressor and high-pass off so the agent hears the mic sample for sample."""
        n = len(self._daemons)
        audio: dict[str, Any] = {"preroll_ms": 500}
        if not dsp:
            audio.update(echo_cancellation=False, noise_suppression=False, high_pass_filter=False)
        return {
            "audio": audio,
            "controls": {"button": {"pin": 17, "hold_s": 10.0}, "leds": {"kind": "rgbled", "pins": [5, 6, 13]}},
            "livekit": {"token_source": "local", "url": url, "api_key": "devkey", "api_secret": "secret",
                        "agent_name": "bench-agent"},
            "session": {"mode": "push_to_talk", "idle_timeout_s": 0, "agent_connect_timeout_s": 20, **session},
            "daemon": {"control_socket": str(self.workdir / f"ctl-{n}.sock"),
                       "status_file": str(self.workdir / f"status-{n}.json")},
        }

    def daemon(self, config: dict[str, Any], *, in_netns: bool = True, **kwargs: Any) -> DaemonProcess:
        assert self.netns is not None
        d = self.workdir / f"daemon-{len(self._daemons)}"
        d.mkdir()
        path = write_config(d / "config.yaml", config)
        path.chmod(0o600)
        daemon = DaemonProcess(path, pulse_server=self.pulse_server,
                               prefix=self.netns.command([]) if in_netns else None, **kwargs)
        self._daemons.append(daemon)
        return daemon

    def session(self, daemon: DaemonProcess, wav: Path, *, turns: int = 1, timeout: float = 30.0) -> dict[str, Any]:
        """One full push-to-talk session of `turns` turns: press, speak the WAV into the mic, release, the agent
        answers (its reply is played); then end. Returns the daemon's metrics at the end."""
        for turn in range(turns):
            heard = len(_press_latencies(daemon))
            mark = daemon.mark()
            player = play_into_mic(self.pulse_server, wav)
            daemon.command("press")
            if turn == 0:
                daemon.wait_status("listening", timeout=timeout, start=mark)
            # a later turn's press finds the device listening already: wait for the press's own latency instead
            # (polled only then: each look is a call into the session process)
            wait_until(lambda n=heard: len(_press_latencies(daemon)) > n, timeout=timeout,
                       what="the press's press → listening")
            player.wait(timeout=timeout)
            mark = daemon.mark()
            daemon.command("release")
            daemon.wait_status("speaking", timeout=timeout, start=mark)
            daemon.wait_status("listening", timeout=timeout, start=mark)
        mark = daemon.mark()
        daemon.command("end")
        daemon.wait_status("idle", timeout=timeout, start=mark)
        return dict(daemon.snapshot()["metrics"])
