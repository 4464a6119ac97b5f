"""The fleet run: N enrolled kiosks through a LiveKit cluster for M minutes, one node and one worker killed.

    python -m benchmarks.fleet [--devices 3] [--minutes 10] [--json OUT]   (as root)

The engine is tests/cluster's: Debian's redis-server and two livekit-server nodes of the pinned build sharing it in
a network namespace, one test agent worker per node (the same agent name), the reference token endpoint
(tokenserver/) handing out the nodes. Each device is a real daemon (`voice-device run --simulate`) enrolled with
its own credential, on its own virtual audio rig (`--shared-mic`: one for all), having push-to-talk conversations
(press, speak a phrase, release, the agent answers, end; tests/cluster/fleet.py), staggered so they overlap
without starting together.

Phases: fault-free until `--node-at` of the run (the peer: the same fleet, nothing failing); then the node hosting
the most conversations under way is killed (SIGKILL) and started again `--node-down` s later; at `--worker-at`
the worker running a conversation is killed and started again `--worker-down` s later. Reported
(tests/cluster/ledger.py): conversations attempted / completed / failed by the reason the device showed / left
unaccounted, press → listening p50/p90/max, fault-free against faulted, each fault's cost in its window; and the
CPU the machine and the daemons used (everything runs on this machine: the fleet's N daemons, the cluster, the
workers and the sound server share its cores).

With `--shared-mic` every daemon hears the one virtual mic, so every phrase and every answer reaches every device
(and, its mic live after the release, its agent); a conversation is judged by its own device's states and the
agent's recording of its own room.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.report import emit
from benchmarks.stack import proc_stats
from tests import programs
from tests.cluster.cluster import Cluster
from tests.cluster.cluster import unavailable_reason as cluster_unavailable
from tests.cluster.endpoint import GROUPS, TokenEndpoint
from tests.cluster.fleet import GROUP, KIOSK, Device, Fleet, Planned, Schedule, audio_rigs, launch_enrolled
from tests.cluster.ledger import rows, summarise
from tests.livekit.conftest import START_TURN_DELAY_S
from tests.livekit.network import tag_device_connections, tools_missing
from tests.livekit.server import unavailable_reason as server_unavailable
from tests.livekit.worker_proc import Worker, agent_unavailable_reason
from tests.stubsfu.netns import NetNs, NetNsUnavailable
from tests.wire.signals import speech, write_wav

PHRASE = "What time does the museum open tomorrow morning?"


def missing() -> str | None:
    """Why the fleet cannot run here, as a sentence naming what to install or do; None when it can."""
    if os.geteuid() != 0:
        return "the fleet run needs root (network namespaces, like tests/cluster): run it as root"
    if importlib.util.find_spec("voice_device_tokens") is None:
        return ("the reference token endpoint (tokenserver/, module voice_device_tokens) is not installed: "
                "bash scripts/setup.sh installs it")
    return (server_unavailable() or agent_unavailable_reason() or tools_missing() or cluster_unavailable()
            or programs.missing("espeak-ng", "sox", "pulseaudio", "pactl", "paplay"))


def busy_jiffies() -> tuple[int, int]:
    """The machine's (busy, total) CPU time so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def daemon_cpu(devices: list[Device]) -> dict[str, float]:
    """CPU seconds so far of each running daemon and its session processes."""
    return {d.name: proc_stats(d.daemon.process.proc.pid)["cpu_s"] for d in devices
            if d.daemon.process.proc.poll() is None}


def run(devices: int, schedule: Schedule, keep: bool, shared_mic: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="vd-fleet-"))
    with contextlib.ExitStack() as stack:
        ns = NetNs.create("vdfl")
        stack.callback(ns.delete)
        tag_device_connections(ns)
        cluster = Cluster.start(ns, workdir)
        stack.callback(cluster.stop)
        workers = [Worker(node, workdir, GROUPS[GROUP], start_turn_delay_s=START_TURN_DELAY_S, tag=f"@{node.name}")
                   for node in cluster.nodes]
        for w in workers:
            stack.callback(w.stop)
            w.start()
        endpoint = TokenEndpoint(ns, workdir, cluster.urls)
        stack.callback(endpoint.stop)
        endpoint.start()
        pulses = stack.enter_context(audio_rigs(1 if shared_mic else devices))
        fleet_devices = []
        for i in range(devices):
            pulse = pulses[i % len(pulses)]
            daemon = launch_enrolled(ns, endpoint, workdir, pulse, f"kiosk-{i}", GROUP, session=KIOSK)
            stack.callback(daemon.stop)
            fleet_devices.append(Device(f"kiosk-{i}", daemon, pulse))
        phrase = write_wav(workdir / "phrase.wav", speech(PHRASE, seed=25))
        fleet = Fleet(cluster, workers, fleet_devices, phrase)
        cpu0, (busy0, total0) = daemon_cpu(fleet_devices), busy_jiffies()
        run_s = fleet.run(schedule, progress=lambda line: print(line, file=sys.stderr, flush=True))
        cpu1, (busy1, total1) = daemon_cpu(fleet_devices), busy_jiffies()
        summary = summarise(fleet.conversations, fleet.faults, [d.name for d in fleet_devices], run_s)
        crashed = fleet.crashed()
    if keep:
        print(f"fleet: logs and recordings kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    summary.update({
        "audio_rigs": "one shared by all devices" if shared_mic else "one per device",
        "schedule": {"run_s": schedule.run_s, "gap_s": schedule.gap_s, "seed": schedule.seed,
                     "faults": [vars(f) for f in schedule.faults]},
        "daemons_crashed": crashed,
        "daemon_cpu_percent_each": {name: round(100 * (cpu1[name] - cpu0[name]) / run_s, 1) for name in cpu1},
        "machine_busy_percent": round(100 * (busy1 - busy0) / max(1, total1 - total0), 1),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    })
    return summary


def table(summary: dict[str, Any]) -> list[tuple[str, str]]:
    each = summary["daemon_cpu_percent_each"]
    return [*rows(summary),
            ("daemons: CPU each (% of one core, whole run)", ", ".join(f"{n} {c:.1f}" for n, c in each.items())),
            ("machine: busy over the run / load average (1 min) at the end",
             f"{summary['machine_busy_percent']:.0f} % of {summary['cpus']} CPUs / {summary['load_average_1m']:.2f}"),
            ("daemons crashed", ", ".join(summary["daemons_crashed"]) or "none")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--devices", type=int, default=3, help="kiosks in the fleet (default 3: what two cores carry)")
    p.add_argument("--minutes", type=float, default=10.0, help="how long conversations start (default 10)")
    p.add_argument("--node-at", type=float, default=0.4, help="node kill, as a share of the run (default 0.4)")
    p.add_argument("--node-down", type=float, default=30.0, help="seconds the node stays dead (default 30)")
    p.add_argument("--worker-at", type=float, default=0.7, help="worker kill, as a share of the run (default 0.7)")
    p.add_argument("--worker-down", type=float, default=10.0, help="seconds the worker stays dead (default 10)")
    p.add_argument("--gap", type=float, default=4.0, help="a device's pause between conversations, s (default 4; "
                                                          "up to as much again at random)")
    p.add_argument("--seed", type=int, default=25)
    p.add_argument("--shared-mic", action="store_true",
                   help="one audio rig for all devices (every mic hears every phrase and answer); default one each")
    p.add_argument("--keep", action="store_true", help="keep the logs and the agents' recordings")
    p.add_argument("--json", help="write every figure (and each conversation) here")
    args = p.parse_args(argv)
    if args.devices < 1 or args.minutes <= 0 or not 0 < args.node_at < args.worker_at < 1:
        p.error("--devices must be at least 1, --minutes above 0, and 0 < --node-at < --worker-at < 1")
    if (reason := missing()) is not None:
        print(f"fleet: cannot run: {reason}", file=sys.stderr)
        return 2
    run_s = args.minutes * 60
    schedule = Schedule(run_s, (Planned("node", args.node_at * run_s, args.node_down),
                                Planned("worker", args.worker_at * run_s, args.worker_down)), args.gap, args.seed)
    started = time.monotonic()
    try:
        summary = run(args.devices, schedule, args.keep, args.shared_mic)
    except NetNsUnavailable as e:
        print(f"fleet: cannot run: {e}", file=sys.stderr)
        return 2
    summary["wall_s"] = round(time.monotonic() - started, 1)
    emit(table(summary), summary, args.json)
    for line in summary["all"]["unaccounted"]:
        print(f"  unaccounted: {line}")
    return 0 if not summary["all"]["unaccounted"] and not summary["daemons_crashed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
