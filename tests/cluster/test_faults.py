"""What else a fleet meets besides a node's death (test_nodes.py): a node drained for a rolling upgrade, the worker
running a device's agent killed, Redis restarted, the token endpoint down or slow. Each with enrolled devices' real
daemons; what each product shows is judged from its states, reasons and log.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.cluster import Cluster
from tests.cluster.endpoint import TokenEndpoint
from tests.cluster.test_nodes import converse, converse_placed, talk  # noqa: F401 (a fixture)
from tests.livekit.conftest import room_of
from tests.livekit.worker_proc import Worker
from tests.polling import wait_for
from tests.wire.daemon import Daemon
from tests.wire.rig import play_into_mic

pytestmark = [pytest.mark.audio, pytest.mark.slow]

DRAIN_EXIT_S = 90.0  # a drained node leaves once its last participant has (it checks every 5 s)


def kiosk_turn(daemon: Daemon, workers: list[Worker], audio_rig: Any, wav: Path) -> list[str]:
    """A push-to-talk turn in the running session: press, speak once the agent has taken the turn, release, until
    the agent answers and listens again; returns the states it went through."""
    recording = workers[0].room(room_of(daemon))  # the workers share one record folder

    def settled() -> bool:  # the agent answered what came before (the press that started the session) and listens
        states = recording.events("agent_state")
        return bool(states) and states[-1]["new"] == "listening" and time.time() - states[-1]["t"] > 1.0

    wait_for(settled, 60, "the agent to be done with the turn before")
    turns = len(recording.events("input_enabled"))
    mark = daemon.mark()
    daemon.ctl("press")
    wait_for(lambda: len(recording.events("input_enabled")) > turns, 30, "the agent to take the turn")
    assert play_into_mic(audio_rig.pulse_server, wav).wait(timeout=60) == 0
    daemon.ctl("release")
    daemon.wait_state("speaking", timeout=60, after=mark)
    wait_for(lambda: daemon.states()[-1] == "listening", 60, "the agent to listen again")
    return daemon.states()[mark:]


def test_a_node_drained_for_an_upgrade_finishes_its_conversation_and_takes_no_new_one(
        cluster: Cluster, workers: list[Worker], endpoint: TokenEndpoint, start_device: Callable[..., Daemon],
        audio_rig: Any, talk: Path) -> None:  # noqa: F811
    """The rolling upgrade, as an operator does it: take the node out of the token endpoint's rotation (a load
    balancer's pool), SIGTERM it (livekit-server drains: no new rooms are placed on it; it exits once its last
    participant has left), upgrade, start it, put it back. A kiosk mid-conversation on that node finishes its turn
    without a failure; a kiosk starting a conversation meanwhile lands on the other node."""
    busy = start_device("kiosk-drain-busy", "kiosks", session={"idle_timeout_s": 600})
    placed = converse_placed(cluster, busy, "same")  # the device both signals through and lives on the node
    drained = placed.host
    other = next(node for node in cluster.nodes if node is not drained)
    endpoint.rotate([other.url])
    mark = busy.mark()
    drained.process.proc.terminate()  # SIGTERM: drain
    states = kiosk_turn(busy, workers, audio_rig, talk)
    print(f"drain: the busy kiosk's turn on the draining node went {states}")
    assert "failed" not in busy.states()[mark:]
    assert drained.alive(), "the drained node left while its conversation went on"

    newcomer = start_device("kiosk-drain-new", "kiosks", session={"idle_timeout_s": 600})
    new_room = converse(newcomer)
    assert cluster.host_of(new_room) is other, "a new conversation was placed on the draining node"

    busy.ctl("end")
    ended = time.monotonic()
    wait_for(lambda: not drained.alive(), DRAIN_EXIT_S, "the drained node to exit once its conversation ended")
    print(f"drain: the node exited {time.monotonic() - ended:.1f} s after its last conversation ended "
          f"(rc={drained.process.proc.returncode if drained.process else None})")
    assert "failed" not in busy.states()[mark:] and "failed" not in newcomer.states()
    drained.start()
    endpoint.rotate(cluster.urls)


@pytest.mark.parametrize("product", ["kiosk", "speaker"])
def test_the_worker_running_the_devices_agent_killed_the_device_says_so_and_the_next_conversation_works(
        cluster: Cluster, workers: list[Worker], start_device: Callable[..., Daemon], product: str) -> None:
    """The job's worker dies (SIGKILL) mid-conversation; the other worker is alive. The server notices the agent
    gone only when its connection times out (~20 s). Decided per product: the kiosk shows `agent-left` (its LED
    says so) until the next press, which works — a new room, the other worker's agent. A smart speaker's
    conversation ends as conversations end (its follow-up window passes without an answer, or `agent-left` if
    the server tells first) and is not started over unasked — a question asked twenty seconds ago may not be
    the user's question any more; the next wake word (or press) works."""
    session = {"idle_timeout_s": 600} if product == "kiosk" else {"mode": "wake_word"}
    daemon = start_device(f"{product}-worker", f"{product}s", session=session)
    room = converse(daemon)
    worker_id = cluster.worker_id_of(room)
    victim = next(w for w in workers if worker_id in w.ids())
    mark = daemon.mark()
    victim.kill()
    killed = time.monotonic()
    if product == "kiosk":
        shown = daemon.wait_state("failed", timeout=90, after=mark)
        assert shown["reason"] == "agent-left"
    else:
        shown = wait_for(lambda: next((m for m in daemon.messages[mark:] if m.get("state") in ("idle", "failed")),
                                      None), 90, "the conversation to end")
        assert shown["state"] == "idle" or shown["reason"] == "agent-left", shown
    shown_s = shown["seen_monotonic"] - killed
    mark = daemon.mark()
    new_room = converse(daemon)
    back = daemon.wait_state("listening", timeout=1, after=mark)
    print(f"worker killed ({product}): the device showed {shown['state']} {shown.get('reason') or ''} "
          f"{shown_s:.1f} s after; the next press listened {back['seen_monotonic'] - killed:.1f} s after the kill, "
          f"in {new_room}")
    assert new_room != room and cluster.worker_id_of(new_room) != worker_id


def test_redis_restarted_mid_conversation(cluster: Cluster, workers: list[Worker],
                                          start_device: Callable[..., Daemon], audio_rig: Any,
                                          talk: Path) -> None:  # noqa: F811
    """Redis (memory only: it comes back empty) restarted under a kiosk's conversation. The room's host keeps the
    room and its media; the nodes register themselves again; the conversation goes on and new ones start."""
    daemon = start_device("kiosk-redis", "kiosks", session={"idle_timeout_s": 600})
    converse(daemon)
    mark = daemon.mark()
    cluster.redis.kill()
    time.sleep(2.0)
    cluster.redis.start()
    states = kiosk_turn(daemon, workers, audio_rig, talk)
    print(f"redis restarted: the kiosk's next turn went {states}; all states since {daemon.states()[mark:]}")
    assert "failed" not in daemon.states()[mark:]
    converse(start_device("kiosk-redis-new", "kiosks", session={"idle_timeout_s": 600}))


def test_the_token_endpoint_down_or_slow_devices_holding_a_token_keep_talking_and_others_say_why(
        cluster: Cluster, workers: list[Worker], endpoint: TokenEndpoint, start_device: Callable[..., Daemon],
        audio_rig: Any, talk: Path) -> None:  # noqa: F811
    """The endpoint killed (refused connections), then hung (SIGSTOP: connections accepted, nothing answered — a
    slow endpoint), then back. A kiosk in a conversation keeps it (its token is the server's to refresh); a kiosk
    pressed meanwhile fails with the reason and the sentence for each, and works on the next press once the
    endpoint is back."""
    talking = start_device("kiosk-holding", "kiosks", session={"idle_timeout_s": 600})
    converse(talking)
    newcomer = start_device("kiosk-needing", "kiosks", livekit={"http_timeout_s": 3.0})
    held_mark = talking.mark()

    endpoint.kill()
    down, mark, log_at = press_until_failed(newcomer)
    assert down["reason"] == "unreachable"
    assert "could not be reached" in down.get("detail", "") + newcomer.log()[log_at:]
    assert endpoint.credentials["kiosk-needing"] not in newcomer.log()
    states = kiosk_turn(talking, workers, audio_rig, talk)
    assert "failed" not in states
    wait_for(lambda: gave_up(newcomer, log_at), 120, "the retries to be given up")  # push-to-talk: a budget

    endpoint.start()
    endpoint.pause()
    slow, mark, log_at = press_until_failed(newcomer)
    assert slow["reason"] == "unreachable"
    wait_for(lambda: "did not answer within 3 s" in newcomer.log()[log_at:], 30, "the slow endpoint's sentence")
    sentences = sorted(set(re.findall(r"state=failed reason=unreachable detail=(.*)", newcomer.log())))
    print(f"endpoint down, then slow: the device said {sentences}")

    endpoint.resume()
    wait_for(lambda: "listening" in newcomer.states()[mark:] or gave_up(newcomer, log_at), 120,
             "a retry to get through, or the retries to be given up")
    if "listening" not in newcomer.states()[mark:]:
        converse(newcomer)
    assert "failed" not in talking.states()[held_mark:]


def press_until_failed(daemon: Daemon) -> tuple[dict[str, Any], int, int]:
    """A press and release that fail: the failure's message, and the state mark and log offset from before."""
    mark, log_at = daemon.mark(), len(daemon.log())
    daemon.ctl("press")
    daemon.ctl("release")
    return daemon.wait_state("failed", timeout=30, after=mark), mark, log_at


def gave_up(daemon: Daemon, log_at: int) -> bool:
    """The daemon's retries of its failed session are over (its log says `retry_in_s=never` since `log_at`)."""
    return "retry_in_s=never" in daemon.log()[log_at:]
