"""The fleet run's accounting (tests/cluster/ledger.py), on made-up conversations: which stretch each belongs to,
the tallies, the fault-free against faulted ratios and what each fault cost. Fast: no process runs."""

from __future__ import annotations

from tests.cluster.ledger import (
    COMPLETED,
    FAILED,
    FAULT_FREE,
    UNACCOUNTED,
    Conversation,
    Fault,
    phase_of,
    quantile,
    rows,
    summarise,
)

DEVICES = ["a", "b"]
NODE = Fault("node", "node-1", at_s=100.0, restored_s=140.0)
WORKER = Fault("worker", "worker@node-0", at_s=200.0, restored_s=215.0)


def done(device: str, start: float, end: float, join: float) -> Conversation:
    return Conversation(device, start, end, COMPLETED, join_s=join)


def failed(device: str, start: float, end: float, reason: str, at: float) -> Conversation:
    return Conversation(device, start, end, FAILED, reason, shown=(reason,), failed_at_s=at)


CONVERSATIONS = [
    done("a", 0, 10, 0.5), done("b", 5, 15, 0.7), done("a", 20, 30, 0.9), done("b", 25, 35, 1.1),
    failed("a", 95, 130, "connection-lost", at=121.0),  # under way when the node died: the node's
    done("b", 101, 112, 2.0),  # on the survivor, slower than any fault-free join: delayed
    done("a", 135, 145, 0.6), done("b", 150, 160, 0.8),
    Conversation("a", 201, 240, UNACCOUNTED, "no answer"),
    done("b", 205, 215, 0.7), done("a", 245, 255, 0.6),
]


def test_a_conversation_under_way_when_a_fault_struck_is_that_faults() -> None:
    assert phase_of(CONVERSATIONS[3], [NODE, WORKER]) == FAULT_FREE
    assert phase_of(CONVERSATIONS[4], [NODE, WORKER]) == "node"
    assert phase_of(CONVERSATIONS[8], [NODE, WORKER]) == "worker"


def test_the_nearest_rank_quantile() -> None:
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.9) == 4.0
    assert quantile([7.0], 0.5) == 7.0


def test_every_conversation_is_counted_once_by_outcome_and_reason() -> None:
    s = summarise(CONVERSATIONS, [NODE, WORKER], DEVICES, run_s=260.0)
    assert s["all"]["attempted"] == 11
    assert s["all"]["completed"] == 9
    assert s["all"]["failed"] == {"connection-lost": 1}
    assert s["all"]["unaccounted"] == ["a@201s: no answer"]
    assert s["fault_free"]["attempted"] + s["faulted"]["attempted"] == 11
    assert s["fault_free"]["join"] == {"count": 4, "p50_s": 0.7, "p90_s": 1.1, "max_s": 1.1}


def test_the_faulted_stretch_is_compared_with_the_fault_free_one() -> None:
    s = summarise(CONVERSATIONS, [NODE, WORKER], DEVICES, run_s=260.0)
    assert s["fault_free"]["completed_share"] == 1.0
    assert s["faulted"]["completed_share"] == round(5 / 7, 3)
    assert s["completed_share_ratio_faulted_over_fault_free"] == round(5 / 7, 3)
    assert s["join_p50_ratio_faulted_over_fault_free"] == round(0.7 / 0.7, 3)


def test_each_fault_costs_what_happened_in_its_window() -> None:
    node, worker = summarise(CONVERSATIONS, [NODE, WORKER], DEVICES, run_s=260.0)["faults"]
    assert node["in_window"] == 4  # the failed one, the delayed one and the two after the restore
    assert node["failed"] == {"connection-lost": 1}
    assert node["delayed"] == 1
    assert node["first_failure_after_s"] == 21.0
    assert node["every_device_completed_again_after_s"] == 45.0  # b at 112, a at 145
    assert node["down_s"] == 40.0
    assert worker["unaccounted"] == 1
    assert worker["every_device_completed_again_after_s"] == 55.0  # b at 215, a at 255


def test_a_device_that_never_completes_again_leaves_the_fleet_unrecovered() -> None:
    only_b = [c for c in CONVERSATIONS if not (c.device == "a" and c.started_s > 100)]
    node, _ = summarise(only_b, [NODE, WORKER], DEVICES, run_s=260.0)["faults"]
    assert node["every_device_completed_again_after_s"] is None
    assert "never in the window" in dict(rows(summarise(only_b, [NODE, WORKER], DEVICES, 260.0)))[
        "fault: node node-1 killed at 100 s (down 40 s)"]


def test_the_table_names_every_failure_reason_and_fault() -> None:
    table = dict(rows(summarise(CONVERSATIONS, [NODE, WORKER], DEVICES, run_s=260.0)))
    assert table["all: attempted / completed / unaccounted"] == "11 / 9 / 1"
    assert table["all: failed by reason"] == "connection-lost 1"
    assert table["fault-free: press → listening p50 / p90 / max"] == "0.70 / 1.10 / 1.10 s (n=4)"
    assert "fault: worker worker@node-0 killed at 200 s (down 15 s)" in table


def test_a_conversation_spanning_two_faults_is_counted_in_the_later_ones_window_only() -> None:
    spanning = [*CONVERSATIONS, failed("b", 190, 230, "agent-left", at=225.0)]
    node, worker = summarise(spanning, [NODE, WORKER], DEVICES, run_s=260.0)["faults"]
    assert node["failed"] == {"connection-lost": 1}
    assert worker["failed"] == {"agent-left": 1}
    assert worker["first_failure_after_s"] == 25.0
