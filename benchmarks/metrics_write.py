"""What one write of the Prometheus textfile costs the daemon's event loop (device/daemon/outlets/prometheus.py).

    python -m benchmarks.metrics_write [--writes N] [--dir DIR] [--json OUT]

The outlet renders the registry (every metric, the daemon's /proc figures read there and then) and replaces the file
on the loop thread, on every status change and every `metrics.interval_s`. Measured here with a status as a busy
device has it (failures, conversations, latencies observed, a session process): `render` alone and `render +
replace` (hidden sibling, chmod, rename), against prometheus_client's own `write_to_textfile` of the same registry
(the peer: the same work without the chmod), each the wall time per write, p50 / p99 / max in µs. Absolute times
drift on shared machines; the ratio to the peer is the figure to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from prometheus_client import write_to_textfile

from device.daemon.metrics import DeviceMetrics
from device.daemon.outlets import StatusChange
from device.daemon.status import ConversationStatus, DeviceStatus, Latency, WakeStatus, replace_file
from device.session.status import ProcessStatus, SessionMetrics, SessionStatus


def busy_metrics() -> DeviceMetrics:
    metrics = DeviceMetrics("wake_word")
    before = DeviceStatus()
    for n in range(1, 41):
        now = DeviceStatus(
            "listening", version="bench", since=time.time(),
            session=SessionStatus(metrics=SessionMetrics(sessions=n, reconnects=n // 10, failures=MappingProxyType(
                {"unreachable": n // 5, "agent-left": n // 20})), process=ProcessStatus(os.getpid(), n)),
            wake=WakeStatus(listening=True, detections=n, ignored_own_voice=n // 8),
            conversations=ConversationStatus(
                started=MappingProxyType({"wake_word": n}), ended=MappingProxyType({"follow-up-over": n - 1}),
                wake_to_listening=Latency(count=min(n, 32), last_ms=600 + 37 * (n % 9), total=n)))
        metrics.record(StatusChange(now, before))
        before = now
    return metrics


def timed(fn: Callable[[], object], writes: int) -> dict[str, float]:
    took = []
    for _ in range(writes):
        t = time.perf_counter()
        fn()
        took.append((time.perf_counter() - t) * 1e6)
    took.sort()
    return {"p50_us": statistics.median(took), "p99_us": took[int(0.99 * (len(took) - 1))], "max_us": took[-1]}


def measure(writes: int, directory: str) -> dict[str, Any]:
    metrics = busy_metrics()
    path = os.path.join(directory, "voice-device.prom")
    result: dict[str, Any] = {
        "bytes": len(metrics.render()),
        "render": timed(metrics.render, writes),
        "render_and_replace": timed(lambda: replace_file(path, metrics.render()), writes),
        "peer_write_to_textfile": timed(lambda: write_to_textfile(path, metrics.registry), writes),
        "writes": writes,
    }
    result["ratio_to_peer_p50"] = result["render_and_replace"]["p50_us"] / result["peer_write_to_textfile"]["p50_us"]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.metrics_write", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--writes", type=int, default=2000)
    p.add_argument("--dir", help="where to write (default: a temp dir; pass the textfile directory's filesystem)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vd-bench-prom-", dir=args.dir) as d:
        result = measure(args.writes, d)
    print(f"metrics textfile: {result['bytes']} bytes, {result['writes']} writes (p50 / p99 / max, µs)")
    for name in ("render", "render_and_replace", "peer_write_to_textfile"):
        r = result[name]
        print(f"  {name:<24} {r['p50_us']:8.0f} {r['p99_us']:8.0f} {r['max_us']:8.0f}")
    print(f"  ours / peer (p50)        {result['ratio_to_peer_p50']:8.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
