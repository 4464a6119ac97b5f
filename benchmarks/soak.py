"""Soak: N full sessions through one daemon process, and what it holds afterwards.

    python -m benchmarks.soak --sessions 500 [--json OUT] [--warmup 3]

Each session: press, speak a short sentence into the virtual mic, release, the stub's agent answers (its echo
is played on the speaker), end. RSS, open file descriptors and threads of the daemon and its session processes
together (`session.process: warm` runs each session in a child) are read from /proc at the start (after
`--warmup` sessions: the first session loads the SDK's native runtime and its threads, which is start-up, not a
leak) and at the end (after the daemon has been idle for a moment); the daemon alone is reported too. A session
that does not reach a state in time is a failure: it is ended, counted, and the soak goes on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.stack import Bench, proc_stats

SETTLE_S = 3.0


def soak(sessions: int, warmup: int = 3, progress: bool = True) -> dict[str, Any]:
    with Bench() as bench:
        stub = bench.stub("--agent-delay", "0", "--ptt")
        daemon = bench.daemon(bench.config(stub.url))
        daemon.wait_ready()
        wav = bench.speech_wav("Turn on the lights, please.", "soak")
        failures: list[str] = []

        def one(i: int) -> None:
            try:
                bench.session(daemon, wav)
            except AssertionError as e:
                failures.append(f"session {i}: {str(e).splitlines()[0]}")
                try:
                    daemon.command("end")
                    daemon.wait_status("idle", timeout=20, start=max(0, daemon.mark() - 1))
                except Exception as again:  # the daemon is gone or stuck: nothing more to soak
                    failures.append(f"session {i}: could not end it ({again})")
                    raise

        for i in range(warmup):
            one(-i - 1)
        time.sleep(SETTLE_S)
        start = _steady(daemon.pid)
        started = time.monotonic()
        rss: list[int] = []
        for i in range(sessions):
            one(i)
            rss.append(int(proc_stats(daemon.pid)["daemon_rss_bytes"]))  # the daemon alone: children come and go
            if progress and (i + 1) % 25 == 0:
                s = proc_stats(daemon.pid)
                print(f"soak: {i + 1}/{sessions} sessions, rss {s['rss_bytes'] / 2**20:.1f} MB, fds {s['fds']}, "
                      f"threads {s['threads']}, failures {len(failures)}", file=sys.stderr, flush=True)
        time.sleep(SETTLE_S)
        end = _steady(daemon.pid)
        metrics = daemon.snapshot()["metrics"]
        participants = _max_concurrent_device_participants(stub.events())
        daemon.signal(15)
        exit_code = daemon.wait(timeout=10)
    return {
        "sessions": sessions,
        "warmup_sessions": warmup,
        "failures": len(failures),
        "failure_messages": failures[:20],
        "wall_s": round(time.monotonic() - started, 1),
        "rss_start_bytes": start["rss_bytes"], "rss_end_bytes": end["rss_bytes"],
        "rss_growth_bytes": end["rss_bytes"] - start["rss_bytes"],
        "daemon_rss_slope_bytes_per_session": round(_slope(rss)),
        "daemon_rss_after_each_session_bytes": rss,
        "fds_start": start["fds"], "fds_end": end["fds"], "fd_growth": end["fds"] - start["fds"],
        "threads_start": start["threads"], "threads_end": end["threads"],
        "thread_growth": end["threads"] - start["threads"],
        "processes_start": start["processes"], "processes_end": end["processes"],
        "daemon_rss_start_bytes": start["daemon_rss_bytes"], "daemon_rss_end_bytes": end["daemon_rss_bytes"],
        "daemon_fds_start": start["daemon_fds"], "daemon_fds_end": end["daemon_fds"],
        "daemon_threads_start": start["daemon_threads"], "daemon_threads_end": end["daemon_threads"],
        "daemon_sessions_metric": metrics.get("sessions"),
        "daemon_failures_metric": metrics.get("failures"),
        "max_concurrent_device_participants": participants,
        "exit_code": exit_code,
    }


def _steady(pid: int, processes: int = 2, timeout: float = 5.0) -> dict[str, float]:
    """The tree's stats once a retired session process has exited (the daemon + its warm child remain)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = proc_stats(pid)
        if stats["processes"] <= processes or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


def _slope(ys: list[int]) -> float:
    """Least-squares slope of RSS over session number: a leak's rate, less noisy than end minus start."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in enumerate(ys)) / sum((x - mx) ** 2 for x in range(n))


def _max_concurrent_device_participants(events: list[dict[str, Any]]) -> int:
    """From the stub's event log: the most device (non-agent) participants in rooms at the same time."""
    present: set[str] = set()
    most = 0
    for e in events:
        if e.get("kind") == "participant_joined":
            present.add(e.get("sid", ""))
        elif e.get("kind") == "participant_left":
            present.discard(e.get("sid", ""))
        most = max(most, len(present))
    return most


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=500)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    result = soak(args.sessions, args.warmup)
    rows = [
        ("sessions (after warm-up)", f"{result['sessions']} (+{result['warmup_sessions']})"),
        ("failures", str(result["failures"])),
        ("wall time", f"{result['wall_s']:.0f} s"),
        ("processes start → end", f"{result['processes_start']} → {result['processes_end']}"),
        ("RSS start → end", f"{result['rss_start_bytes'] / 2**20:.1f} → {result['rss_end_bytes'] / 2**20:.1f} MB "
                            f"({result['rss_growth_bytes'] / 2**20:+.2f} MB)"),
        ("daemon alone: RSS start → end", f"{result['daemon_rss_start_bytes'] / 2**20:.1f} → "
                                          f"{result['daemon_rss_end_bytes'] / 2**20:.1f} MB"),
        ("daemon alone: RSS slope", f"{result['daemon_rss_slope_bytes_per_session'] / 2**20:+.3f} MB/session"),
        ("open fds start → end", f"{result['fds_start']} → {result['fds_end']} ({result['fd_growth']:+d})"),
        ("threads start → end", f"{result['threads_start']} → {result['threads_end']} ({result['thread_growth']:+d})"),
        ("most device participants at once", str(result["max_concurrent_device_participants"])),
        ("daemon exit code", str(result["exit_code"])),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    for message in result["failure_messages"]:
        print(f"  {message}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["failures"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
