"""Where the processor time goes: per process and per thread, idle and in an active session, on the bench.

    sudo .venv/bin/python -m benchmarks.profile [--seconds 10] [--perf DIR] [--py-spy PATH] [--json OUT]

Runs the daemon on the same bench as benchmarks/daemon.py (virtual rig, stub SFU in a namespace, the real
process), then for two windows — idle (mic open, pre-roll ring, ready session process) and active (a started
session, the agent listening, speech playing into the mic) — reports for every process of the daemon's tree and
every thread in it the CPU it used (utime + stime from /proc/PID/task/TID/stat, % of one core), grouped by the
thread's name.

With `--perf DIR`, `perf record` (cpu-clock sampling, DWARF call graphs) runs over each window for each process,
and `perf report` summaries (by thread and shared object; top symbols) are written into DIR; perf data files
stay in DIR and are never committed. With `--py-spy PATH` (the py-spy executable), py-spy samples the Python
stacks of each process over each window (idle frames left out; non-blocking, so no native frames) and writes a
flame-graph-ready collapsed file into the same DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.daemon import AGENT_DELAY_S
from benchmarks.stack import Bench, tree_pids

TICKS = os.sysconf("SC_CLK_TCK")


def thread_times(pids: list[int]) -> dict[tuple[int, int, str], float]:
    """CPU seconds of every thread of `pids`: (pid, tid, thread name) → utime + stime."""
    out: dict[tuple[int, int, str], float] = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
                fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(tid) == pid:
                comm = "main (asyncio loop)"
            out[(pid, int(tid), comm)] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def process_name(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in cmd if w]
    if "device.session.process.host" in words:
        return "session process"
    if "run" in words and "device" in words:
        return "daemon"
    return " ".join(words[:3])


def window(root: int, seconds: float, perf_dir: Path | None, py_spy: str | None, tag: str,
           beside: dict[int, str] | None = None) -> dict[str, Any]:
    """Per-thread CPU of `root`'s tree over `seconds`; `beside` (pid → name): processes measured alongside and
    reported apart (the sound server), not in the total."""
    pids = tree_pids(root)
    names = {p: process_name(p) for p in pids}
    apart = dict(beside or {})
    names.update(apart)
    tools = []
    if perf_dir is not None:
        for p in pids:
            data = perf_dir / f"{tag}-{names[p].replace(' ', '_')}-{p}.data"
            tools.append(subprocess.Popen(
                ["perf", "record", "-q", "-e", "cpu-clock", "-F", "997", "--call-graph", "dwarf,16384",
                 "-p", str(p), "-o", str(data), "--", "sleep", str(seconds)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    if py_spy is not None and perf_dir is not None:
        for p in pids:
            out = perf_dir / f"{tag}-{names[p].replace(' ', '_')}-{p}.pyspy.txt"
            tools.append(subprocess.Popen(
                [py_spy, "record", "--pid", str(p), "--duration", str(int(seconds)), "--rate", "200",
                 "--format", "raw", "--threads", "--nonblocking", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    a, t0 = thread_times(pids + list(apart)), time.monotonic()
    time.sleep(seconds)
    b, wall = thread_times(pids + list(apart)), time.monotonic() - t0
    for t in tools:
        t.wait(timeout=seconds + 120)
    per_process: dict[str, float] = defaultdict(float)
    per_thread: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for key, cpu in b.items():
        pid, _, comm = key
        used = 100.0 * (cpu - a.get(key, 0.0)) / wall
        per_process[names.get(pid, str(pid))] += used
        per_thread[names.get(pid, str(pid))][comm] += used
    return {
        "total_percent": round(sum(v for k, v in per_process.items() if k not in apart.values()), 2),
        "processes": {k: round(v, 2) for k, v in per_process.items()},
        "threads": {proc: {k: round(v, 2) for k, v in sorted(t.items(), key=lambda kv: -kv[1]) if v > 0}
                    for proc, t in per_thread.items()},
    }


def perf_summaries(perf_dir: Path) -> None:
    for data in sorted(perf_dir.glob("*.data")):
        for sort, suffix in (("comm,dso", "by-thread-dso"), ("dso,sym", "by-symbol")):
            with (perf_dir / f"{data.stem}.{suffix}.txt").open("w") as out:
                subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", sort, "--stdio",
                                "-g", "none", "--percent-limit", "0.5"], stdout=out, stderr=subprocess.DEVNULL)
        with (perf_dir / f"{data.stem}.callers.txt").open("w") as out:
            subprocess.run(["perf", "report", "-i", str(data), "--children", "--sort", "sym", "--stdio",
                            "-g", "caller,0.5,callee,function,percent", "--percent-limit", "2"],
                           stdout=out, stderr=subprocess.DEVNULL)


def run(seconds: float, perf_dir: Path | None, py_spy: str | None, config_overrides: dict[str, Any]
        ) -> dict[str, Any]:
    from tests.wire.rig import play_into_mic

    with Bench() as bench:
        stub = bench.stub("--agent-delay", str(AGENT_DELAY_S), "--ptt")
        config = bench.config(stub.url)
        for section, values in config_overrides.items():
            config[section].update(values)
        daemon = bench.daemon(config)
        daemon.wait_ready()
        time.sleep(3.0)  # the ready session process has imported livekit
        pulse = {bench.pulse_pid: "sound server (apart)"}
        result: dict[str, Any] = {"idle": window(daemon.pid, seconds, perf_dir, py_spy, "idle", pulse)}
        wav = bench.speech_wav("This is a long request to measure the processor time of a live session. " * 4,
                               "long")
        mark = daemon.mark()
        daemon.command("start")
        daemon.wait_status("listening", timeout=30, start=mark)
        player = play_into_mic(bench.pulse_server, wav)
        time.sleep(0.5)
        result["active"] = window(daemon.pid, seconds, perf_dir, py_spy, "active", pulse)
        player.kill()
        daemon.command("end")
        daemon.wait_status("idle", timeout=30, start=mark + 1)
        daemon.signal(15)
        daemon.wait(timeout=10)
    if perf_dir is not None:
        perf_summaries(perf_dir)
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    return result


def print_table(result: dict[str, Any]) -> None:
    for phase in ("idle", "active"):
        w = result[phase]
        print(f"{phase}: {w['total_percent']:.1f} % of a core")
        for proc, threads in w["threads"].items():
            print(f"  {proc}: {w['processes'][proc]:.1f} %")
            for comm, pct in threads.items():
                print(f"    {comm:<20} {pct:5.1f} %")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="each window (default 10)")
    p.add_argument("--perf", type=Path, help="record with perf into this directory and summarise there")
    p.add_argument("--py-spy", help="the py-spy executable: sample Python stacks too (needs --perf DIR)")
    p.add_argument("--audio", action="append", default=[], metavar="KEY=VALUE",
                   help="override an audio config key (e.g. sample_rate=16000); repeatable")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    if args.perf is not None:
        args.perf.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {"audio": {}}
    for kv in args.audio:
        key, _, value = kv.partition("=")
        overrides["audio"][key] = json.loads(value)
    result = run(args.seconds, args.perf, args.py_spy, overrides)
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
