"""The fleet run's accounting, pure: each conversation a device attempted and how it ended, each fault and when,
summed into what the run reports (benchmarks/fleet.py, tests/cluster/test_fleet.py) — attempted / completed /
failed by reason, the press → listening distribution, the fault-free stretch against the faulted one, and what
each fault cost.

A conversation ends one of three ways:
- `completed`: its device's agent answered (the device went `speaking` after the release) and the agent's
  recording of the device's room holds the user's turn;
- `failed`: it did not complete and the device showed the user a failure: `reason` is the first the device
  showed (a `FailureReason` value);
- `unaccounted`: neither — no answer and no failure shown (`reason` says where it stuck). A fleet must have none.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

COMPLETED = "completed"
FAILED = "failed"
UNACCOUNTED = "unaccounted"
FAULT_FREE = "fault-free"


@dataclass(frozen=True)
class Conversation:
    device: str
    started_s: float  # since the run began
    ended_s: float
    outcome: str  # COMPLETED, FAILED or UNACCOUNTED
    reason: str = ""  # FAILED: the first failure the device showed; UNACCOUNTED: where it stuck
    join_s: float | None = None  # press → listening, when the device got there
    shown: tuple[str, ...] = ()  # every failure reason the device showed meanwhile (a completed one: retried)
    failed_at_s: float | None = None  # since the run began: when the device first showed a failure in it
    room: str = ""


@dataclass(frozen=True)
class Fault:
    kind: str  # "node" (SIGKILL) or "worker" (SIGKILL)
    target: str
    at_s: float  # since the run began
    restored_s: float  # when the killed program was back (a node serving, a worker registered)


def quantile(values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile (the daemon's own: device/daemon/conversations.py)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def distribution(values: Sequence[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    return {"count": len(values), "p50_s": round(quantile(values, 0.5), 3), "p90_s": round(quantile(values, 0.9), 3),
            "max_s": round(max(values), 3)}


def phase_of(conversation: Conversation, faults: Sequence[Fault]) -> str:
    """The stretch a conversation belongs to: fault-free if it ended before the first fault, else the latest
    fault before its end (`node`, `worker`) — one under way when a fault struck is that fault's."""
    latest = [f for f in faults if f.at_s < conversation.ended_s]
    return latest[-1].kind if latest else FAULT_FREE


def tally(conversations: Sequence[Conversation]) -> dict[str, Any]:
    joins = [c.join_s for c in conversations if c.outcome == COMPLETED and c.join_s is not None]
    done = sum(c.outcome == COMPLETED for c in conversations)
    return {
        "attempted": len(conversations),
        "completed": done,
        "failed": dict(Counter(c.reason for c in conversations if c.outcome == FAILED)),
        "unaccounted": [f"{c.device}@{c.started_s:.0f}s: {c.reason}" for c in conversations
                        if c.outcome == UNACCOUNTED],
        "completed_share": round(done / len(conversations), 3) if conversations else None,
        "completed_after_a_retry": sum(c.outcome == COMPLETED and bool(c.shown) for c in conversations),
        "join": distribution(joins),
    }


def fault_cost(fault: Fault, until_s: float, conversations: Sequence[Conversation], devices: Sequence[str],
               slow_join_s: float | None) -> dict[str, Any]:
    """What one fault cost, in its window (from the kill to the next fault or the run's end): the conversations
    that ended in it (those under way at the kill included: `phase_of`) that failed (by reason) or completed late
    (press → listening above the fault-free maximum), the first failure the fleet showed, and when every device
    had completed a conversation started after the kill (the fleet whole again; None if one never did in the
    window)."""
    window = [c for c in conversations if fault.at_s < c.ended_s <= until_s]
    failed = [c for c in window if c.outcome == FAILED]
    delayed = [c for c in window if c.outcome == COMPLETED and slow_join_s is not None and c.join_s is not None
               and c.join_s > slow_join_s]
    back: dict[str, float] = {}
    for c in conversations:
        if c.outcome == COMPLETED and c.started_s >= fault.at_s and c.device not in back and c.ended_s <= until_s:
            back[c.device] = c.ended_s - fault.at_s
    whole = max(back.values()) if len(back) == len(devices) else None
    first_failure = min((c.failed_at_s - fault.at_s for c in failed if c.failed_at_s is not None), default=None)
    return {
        "kind": fault.kind, "target": fault.target, "at_s": round(fault.at_s, 1),
        "down_s": round(fault.restored_s - fault.at_s, 1),
        "in_window": len(window),
        "failed": dict(Counter(c.reason for c in failed)),
        "unaccounted": sum(c.outcome == UNACCOUNTED for c in window),
        "delayed": len(delayed),
        "first_failure_after_s": None if first_failure is None else round(first_failure, 1),
        "every_device_completed_again_after_s": None if whole is None else round(whole, 1),
    }


def summarise(conversations: Sequence[Conversation], faults: Sequence[Fault], devices: Sequence[str],
              run_s: float) -> dict[str, Any]:
    """Every figure of a fleet run."""
    by_phase: dict[str, list[Conversation]] = {}
    for c in conversations:
        by_phase.setdefault(phase_of(c, faults), []).append(c)
    free = tally(by_phase.get(FAULT_FREE, []))
    faulted = tally([c for c in conversations if phase_of(c, faults) != FAULT_FREE])
    slow = free["join"].get("max_s")
    ends = [f.at_s for f in faults[1:]] + [run_s]
    ratio = (faulted["completed_share"] / free["completed_share"]
             if faulted["completed_share"] is not None and free["completed_share"] else None)
    p50_ratio = (faulted["join"]["p50_s"] / free["join"]["p50_s"]
                 if faulted["join"]["count"] and free["join"]["count"] else None)
    return {
        "devices": list(devices),
        "run_s": round(run_s, 1),
        "all": tally(conversations),
        "phases": {phase: tally(cs) for phase, cs in by_phase.items()},
        "fault_free": free,
        "faulted": faulted,
        "completed_share_ratio_faulted_over_fault_free": None if ratio is None else round(ratio, 3),
        "join_p50_ratio_faulted_over_fault_free": None if p50_ratio is None else round(p50_ratio, 3),
        "faults": [fault_cost(f, end, conversations, devices, slow) for f, end in zip(faults, ends, strict=True)],
        "conversations": [asdict(c) for c in conversations],
    }


def _join(t: dict[str, Any]) -> str:
    j = t["join"]
    if not j["count"]:
        return "none"
    return f"{j['p50_s']:.2f} / {j['p90_s']:.2f} / {j['max_s']:.2f} s (n={j['count']})"


def _failed(failed: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(failed.items())) or "none"


def rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The run's table: `label  value` rows."""
    out = [("devices / run", f"{len(summary['devices'])} / {summary['run_s']:.0f} s")]
    for name, t in [("all", summary["all"]), (FAULT_FREE, summary["fault_free"]), ("faulted", summary["faulted"])]:
        out += [
            (f"{name}: attempted / completed / unaccounted",
             f"{t['attempted']} / {t['completed']} / {len(t['unaccounted'])}"),
            (f"{name}: failed by reason", _failed(t["failed"])),
            (f"{name}: completed after a retry the user saw", str(t["completed_after_a_retry"])),
            (f"{name}: press → listening p50 / p90 / max", _join(t)),
        ]
    share, p50 = (summary["completed_share_ratio_faulted_over_fault_free"],
                  summary["join_p50_ratio_faulted_over_fault_free"])
    out.append(("faulted / fault-free: completed share, join p50",
                f"{'n/a' if share is None else f'{share:.2f}'}, {'n/a' if p50 is None else f'{p50:.2f}'}"))
    for f in summary["faults"]:
        whole = f["every_device_completed_again_after_s"]
        first = f["first_failure_after_s"]
        out.append((f"fault: {f['kind']} {f['target']} killed at {f['at_s']:.0f} s (down {f['down_s']:.0f} s)",
                    f"{f['in_window']} conversations in its window: failed {_failed(f['failed'])}, delayed "
                    f"{f['delayed']}, unaccounted {f['unaccounted']}; first failure "
                    f"{'none' if first is None else f'+{first:.0f} s'}; every device completed again "
                    f"{'never in the window' if whole is None else f'+{whole:.0f} s'}"))
    return out
