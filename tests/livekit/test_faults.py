"""Faults on the REAL server and agent: each test runs its own daemon against the module's livekit-server and
push-to-talk worker (a test that kills a worker or the server brings its own, or starts them again).

What the device must show is judged from its states and reasons, its log, and the agent's recording.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.livekit import network
from tests.livekit.conftest import room_of
from tests.livekit.server import Server
from tests.livekit.tokens import device_token
from tests.livekit.worker_proc import Worker
from tests.polling import wait_for
from tests.wire.daemon import Daemon
from tests.wire.rig import play_into_mic
from tests.wire.signals import RATE, speech, speech_tools_missing, write_wav

pytestmark = [pytest.mark.audio, pytest.mark.slow]

LOSS_PERCENT = 10


@pytest.fixture(scope="module")
def talk(workdir: Path) -> Path:
    if (why := speech_tools_missing()) is not None:
        pytest.skip(why)
    text = "One two three four five six seven eight nine ten, and then it goes on counting a little longer."
    return write_wav(workdir / "talk.wav", speech(text, seed=11))


@pytest.fixture
def own_worker(server: Server, workdir: Path) -> Iterator[Callable[[str], Worker]]:
    started: list[Worker] = []

    def go(name: str) -> Worker:
        w = Worker(server, workdir, name).start()
        started.append(w)
        return w

    yield go
    for w in started:
        w.stop()


def _listening(daemon: Daemon) -> str:
    """Press and release once the agent listens (a press held 10 s is the long press that ends a session)."""
    daemon.ctl("press")
    daemon.wait_state("listening", timeout=40)
    daemon.ctl("release")
    return room_of(daemon)


def test_the_agent_connect_timeout_fires_when_no_worker_is_registered(start_daemon: Callable[..., Daemon]) -> None:
    timeout_s = 3.0
    daemon = start_daemon(agent_name="nobody-registered", agent_connect_timeout_s=timeout_s)
    daemon.ctl("press")
    pressed = time.monotonic()
    failed = daemon.wait_state("failed", timeout=timeout_s + 20)
    assert failed["reason"] == "agent-did-not-join"
    assert failed["seen_monotonic"] - pressed >= timeout_s
    assert "session connected room=" in daemon.log(), "the device joined the real room before giving up"


def test_a_token_signed_with_the_wrong_key_fails_once_with_auth(start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon(livekit={"api_secret": "not-the-servers-secret-0123456789abcdef"})
    daemon.ctl("press")
    failed = daemon.wait_state("failed", timeout=30)
    assert failed["reason"] == "auth"
    time.sleep(3.0)  # a retry storm would show here
    assert daemon.log().count("session connecting") <= 2
    assert "not-the-servers-secret" not in daemon.log()


def test_a_killed_worker_shows_agent_left(start_daemon: Callable[..., Daemon],
                                          own_worker: Callable[[str], Worker]) -> None:
    worker = own_worker("vd-doomed")
    daemon = start_daemon(agent_name="vd-doomed")
    _listening(daemon)
    mark = daemon.mark()
    worker.kill()
    killed = time.monotonic()
    failed = daemon.wait_state("failed", timeout=90, after=mark)
    print(f"agent-left shown {failed['seen_monotonic'] - killed:.1f} s after the worker was killed")
    assert failed["reason"] == "agent-left"


def test_the_room_deleted_through_the_server_api_ends_the_session(server: Server, worker: Worker,
                                                                 start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon()
    room = _listening(daemon)
    mark = daemon.mark()
    assert server.admin("delete-room", room) == "deleted"
    daemon.wait_state("idle", timeout=20, after=mark)
    ended = wait_for(lambda: re.search(r"session ended reason=(\S+)", daemon.log()), 10, "the end's reason")
    print(f"room deleted: device shows {daemon.states()[mark:]}, log reason {ended.group(1)}")
    assert ended.group(1) == "room-closed"
    assert "failed" not in daemon.states()[mark:]


def test_the_participant_removed_through_the_server_api_fails_with_the_reason(
        server: Server, worker: Worker, start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon(livekit={"identity": "device-removed"})
    room = _listening(daemon)
    mark = daemon.mark()
    assert server.admin("remove-participant", room, "device-removed") == "removed"
    failed = daemon.wait_state("failed", timeout=20, after=mark)
    assert failed["reason"] == "participant-removed"


def test_a_duplicate_identity_takes_over_and_the_device_says_so(
        server: Server, worker: Worker, start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon(livekit={"identity": "device-twin"})
    room = _listening(daemon)
    mark = daemon.mark()
    assert server.admin("try-join", device_token(room, "device-twin", agent_name=None)) == "joined"
    failed = daemon.wait_state("failed", timeout=20, after=mark)
    assert failed["reason"] == "duplicate-identity"


def test_the_server_killed_and_restarted_the_device_rejoins_and_accounts_for_the_words(
        server: Server, worker: Worker, start_daemon: Callable[..., Daemon], audio_rig: Any, talk: Path) -> None:
    daemon = start_daemon(session={"idle_timeout_s": 600})
    first_room = _listening(daemon)
    mark = daemon.mark()
    player = play_into_mic(audio_rig.pulse_server, talk)  # words said while the server is away
    time.sleep(0.5)
    server.kill()
    time.sleep(2.0)
    server.start()
    worker_back = wait_for(lambda: worker.process and worker.process.log_tail(200).count("registered worker") >= 2,
                           60, "the worker to register with the restarted server", every=0.5)
    assert player.wait(timeout=30) == 0
    daemon.wait_state("listening", timeout=90, after=mark)
    states = daemon.states()[mark:]
    log = daemon.log()[len(daemon.log()) // 2:]
    second_room = room_of(daemon)
    recording = worker.room(second_room)
    pushed = wait_for(lambda: [e for e in recording.events("preconnect") if "pushed" in e["message"]], 20,
                      "the new agent to take the re-sent buffer")
    dropped = [int(m) for m in re.findall(r"dropped reason=.*? (?:samples|ms)=(\d+)", log)]
    print(f"server restart: device states {states}; rooms {first_room} -> {second_room}; re-sent to the new agent "
          f"{pushed[-1]['duration'] * 1000:.0f} ms; dropped lines {dropped}; worker back {bool(worker_back)}")
    assert "failed" not in states or states[-1] == "listening"
    assert pushed[-1]["duration"] > 0, "the words said while the server was away reached nobody"
    assert len(recording.events("job")) == 1


def test_ten_percent_loss_audio_keeps_flowing(server: Server, worker: Worker, start_daemon: Callable[..., Daemon],
                                               audio_rig: Any, talk: Path) -> None:
    daemon = start_daemon(session={"idle_timeout_s": 600})
    room = _listening(daemon)
    recording = worker.room(room)
    network.loss(server.ns, LOSS_PERCENT)
    try:
        player = play_into_mic(audio_rig.pulse_server, talk)
        assert player.wait(timeout=30) == 0
        time.sleep(0.5)
        mark = daemon.mark()
        daemon.ctl("release")
        daemon.wait_state("speaking", timeout=60, after=mark)
        dropped = network.dropped_packets(server.ns)
    finally:
        network.restore(server.ns)
    finals = wait_for(lambda: [e for e in recording.events("stt_final") if e["voiced_s"] > 0], 20, "the final")
    played_s = float(speech_voiced_seconds(talk))
    heard_s = finals[-1]["voiced_s"]
    print(f"{LOSS_PERCENT} % loss: {dropped} packets dropped; the agent heard {heard_s:.2f} s of speech of "
          f"{played_s:.2f} s played ({heard_s / played_s:.0%})")
    assert dropped > 0
    assert heard_s > 0.5 * played_s, "audio stopped flowing under loss"


def speech_voiced_seconds(wav: Path) -> float:
    import numpy as np

    from tests.wire.signals import read_wav

    samples = read_wav(wav).astype(np.float64)
    block = RATE // 100
    n = len(samples) // block
    rms = np.sqrt(np.mean(samples[: n * block].reshape(n, block) ** 2, axis=1))
    return float(np.count_nonzero(rms > 300.0)) / 100
