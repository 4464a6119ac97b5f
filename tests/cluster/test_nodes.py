"""A node of the cluster lost under a conversation: killed (SIGKILL, mid-turn) or drained for a rolling upgrade
(SIGTERM). Each test runs an enrolled device's real daemon (tokens from the reference endpoint, which hands out
any healthy node) and places its conversation as the test needs — the room's host is the cluster's choice, so a
session is started again until the placement is the one under test.

Placement: `same` — the device signals through the node that hosts its room (the node's death takes both);
`split` — it signals through one node and its room lives on the other (the signal is relayed over Redis).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.cluster import Cluster
from tests.livekit.conftest import room_of
from tests.livekit.server import Server
from tests.livekit.worker_proc import RoomRecording, Worker
from tests.polling import wait_for
from tests.programs import need
from tests.wire.daemon import Daemon
from tests.wire.rig import play_into_mic
from tests.wire.signals import speech, write_wav

pytestmark = [pytest.mark.audio, pytest.mark.slow]

PLACEMENT_TRIES = 8  # each try lands as wanted with probability 1/2 (two nodes, the cluster picks at random)
RECOVERY_BOUND_S = 60.0  # the README's stated bound, with the margin of a loaded 2-core machine


@pytest.fixture(scope="module")
def talk(workdir: Path) -> Path:
    need("espeak-ng", "sox")
    text = "One two three four five six seven eight nine ten, and then it goes on counting a little longer."
    return write_wav(workdir / "talk.wav", speech(text, seed=11))


@dataclass
class Placed:
    room: str
    host: Server
    signal: Server

    @property
    def placement(self) -> str:
        return "same" if self.host is self.signal else "split"


def converse(daemon: Daemon) -> str:
    """Start a conversation with a press (and release) and wait until the agent listens; returns its room."""
    mark = daemon.mark()
    daemon.ctl("press")
    daemon.ctl("release")
    daemon.wait_state("listening", timeout=60, after=mark)
    return room_of(daemon)


def converse_placed(cluster: Cluster, daemon: Daemon, want: str) -> Placed:
    """Start conversations (and end them) until one's room is placed `want`; returns it, listening."""
    for _ in range(PLACEMENT_TRIES):
        room = converse(daemon)
        placed = Placed(room, cluster.host_of(room), cluster.signal_node_of(room))
        if placed.placement == want:
            return placed
        mark = daemon.mark()
        daemon.ctl("end")
        daemon.wait_state("idle", timeout=30, after=mark)
        time.sleep(1.5)  # the next session process warms up
    raise AssertionError(f"no session placed {want!r} in {PLACEMENT_TRIES} tries")


def recording(workers: list[Worker], room: str) -> RoomRecording:
    return workers[0].room(room)  # the workers share one record folder (tests/cluster/conftest.py)


@pytest.mark.parametrize("placement", ["same", "split"])
def test_the_node_hosting_the_conversation_killed_mid_turn_the_device_comes_back_on_the_survivor(
        cluster: Cluster, workers: list[Worker], start_device: Callable[..., Daemon], audio_rig: Any, talk: Path,
        placement: str) -> None:
    """An appliance (toggle: the agent's own turn detection, the mic always live) mid-sentence when the node
    hosting its room dies without a word. `split`: the SDK restarts through the node it signals through, the
    cluster places the room again on the survivor and dispatches a new agent. `same`: the SDK's reconnects find
    nobody; the session fails (`connection-lost`, retried), the retry fetches a fresh token — the endpoint's
    health probe no longer names the dead node — and joins a new room on the survivor. Either way the device is
    back, listening, with an agent, and what the user said meanwhile reaches the new agent as a pre-connect buffer
    or is logged as dropped with its reason."""
    daemon = start_device(f"appliance-{placement}", "appliances", session={"mode": "toggle", "idle_timeout_s": 600})
    placed = converse_placed(cluster, daemon, placement)
    mark, log_at = daemon.mark(), len(daemon.log())
    player = play_into_mic(audio_rig.pulse_server, talk)
    time.sleep(1.0)
    placed.host.kill()
    killed, killed_wall = time.monotonic(), time.time()
    back = daemon.wait_state("listening", timeout=RECOVERY_BOUND_S + 60, after=mark)
    assert player.wait(timeout=30) == 0
    states, log = daemon.states()[mark:], daemon.log()[log_at:]
    room = room_of(daemon)
    survivor = next(node for node in cluster.nodes if node is not placed.host)
    pushed = wait_for(lambda: [e for e in recording(workers, room).events("preconnect")
                               if e["t"] > killed_wall and e["message"].endswith("buffer pushed")], 30,
                      "the new agent to take the re-sent buffer")
    dropped_ms = sum(int(ms) for ms in re.findall(r"dropped reason=.*? ms=(\d+)", log))
    resent_s = pushed[-1]["duration"]
    recovery_s = back["seen_monotonic"] - killed
    noticed_s = daemon.wait_state("reconnecting", timeout=1, after=mark)["seen_monotonic"] - killed
    held_s = recovery_s - noticed_s  # from the device knowing it was cut off to listening again
    print(f"host killed, placement {placement}: the device noticed after {noticed_s:.1f} s and was back listening "
          f"{recovery_s:.1f} s after the kill; states {states}; room {placed.room} -> {room} (now on "
          f"{cluster.host_of(room).name}); of the {held_s:.1f} s held, re-sent to the new agent {resent_s:.2f} s, "
          f"logged as dropped (with the reason) {dropped_ms / 1000:.2f} s; sent live into the dead node before the "
          f"device noticed {noticed_s:.1f} s")
    assert cluster.host_of(room) is survivor
    assert recovery_s < RECOVERY_BOUND_S
    assert resent_s > 0.2, "nothing said while the node was gone reached the new agent"
    # everything the device held from the moment it knew went to the new agent or was logged as dropped
    assert resent_s + dropped_ms / 1000 >= held_s - 1.0
    if placement == "split":
        assert "failed" not in states, "a restart through the surviving node showed the user a failure"
    else:
        failed = [m for m in daemon.messages[mark:] if m.get("state") == "failed"]
        assert all(m.get("reason") == "connection-lost" for m in failed), failed
