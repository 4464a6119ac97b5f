"""Faults on the REAL server and agent: each test runs its own daemon against the module's livekit-server and
push-to-talk worker (a test that kills a worker or the server brings its own, or starts them again).

What the device must show is judged from its states and reasons, its log, and the agent's recording.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.livekit import network
from tests.livekit.conftest import require, room_of
from tests.livekit.server import Server
from tests.livekit.tokens import device_token
from tests.livekit.worker_proc import RoomRecording, Worker
from tests.polling import wait_for
from tests.programs import need
from tests.wire.daemon import Daemon
from tests.wire.rig import play_into_mic
from tests.wire.signals import RATE, read_wav, speech, write_wav

pytestmark = [pytest.mark.audio, pytest.mark.slow]

LOSS_PERCENT = 10
DELAY_MS = 200
CUT_S = 4.0


@pytest.fixture(scope="module")
def talk(workdir: Path) -> Path:
    need("espeak-ng", "sox")
    text = "One two three four five six seven eight nine ten, and then it goes on counting a little longer."
    return write_wav(workdir / "talk.wav", speech(text, seed=11))


@pytest.fixture(scope="module")
def short_talk(workdir: Path) -> Path:
    """For a turn that starts slowly (the delayed join): the button's long press (10 s) must not end it."""
    need("espeak-ng", "sox")
    return write_wav(workdir / "short-talk.wav", speech("One two three four five six.", seed=12))


@pytest.fixture
def own_worker(server: Server, workdir: Path) -> Iterator[Callable[..., Worker]]:
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
                                          own_worker: Callable[..., Worker]) -> None:
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
        server: Server, own_worker: Callable[..., Worker], start_daemon: Callable[..., Daemon], audio_rig: Any,
        talk: Path) -> None:
    """A toggle session with an agent on its own turn detection (input always on), the user talking when the
    server dies (SIGKILL: no leave, no room close) and comes back 2 s later with no memory of the room. The device
    rejoins (the SDK's full restart: the same room name, a new mic SID; the agent's own SDK rejoins the same way
    unless a new job comes); what was said while it was away is sent again as a pre-connect buffer naming the new
    SID (bounded by resend_after_reconnect_s) — anything beyond that bound is logged as dropped."""
    worker = own_worker("vd-vad")  # a toggle device: the companion keeps the agent's own turn detection
    daemon = start_daemon(agent_name="vd-vad", session={"mode": "toggle", "idle_timeout_s": 600})
    daemon.ctl("press")
    daemon.wait_state("listening", timeout=40)
    first_room = room_of(daemon)
    mark, log_at = daemon.mark(), len(daemon.log())
    player = play_into_mic(audio_rig.pulse_server, talk)  # words said while the server is away
    time.sleep(0.5)
    server.kill()
    killed = time.time()
    time.sleep(2.0)
    server.start()
    worker.ensure_registered()
    assert player.wait(timeout=30) == 0
    daemon.wait_state("listening", timeout=90, after=mark)
    states, log = daemon.states()[mark:], daemon.log()[log_at:]
    rooms = re.findall(r"session connected room=(\S+)", log)
    room = rooms[-1] if rooms else first_room
    recording = worker.room(room)
    pushed = wait_for(lambda: [e for e in recording.events("preconnect")
                               if e["t"] > killed and e["message"].endswith("buffer pushed")], 20,
                      "the agent of the rejoined room to take the re-sent buffer")
    jobs = [e for e in recording.events("job") if e["t"] > killed]
    dropped_ms = [int(m) for m in re.findall(r"dropped reason=.*? ms=(\d+)", log)]
    print(f"server restart: device states {states}; rooms {first_room} -> {room} (SDK full restart: "
          f"{'mic republished' in log}); new agent jobs {len(jobs)} (0: the agent's own SDK rejoined too); "
          f"re-sent to the agent {pushed[-1]['duration'] * 1000:.0f} ms; logged as dropped {dropped_ms} ms")
    assert "reconnecting" in states and "failed" not in states
    assert len(jobs) <= 1, "two agents in the rejoined room"
    assert pushed[-1]["duration"] > 0.5, "the words said while the server was away reached nobody"


@dataclass
class HeldTurn:
    """One push-to-talk turn spoken under a fault: what was played, what the agent's STT got, what it took."""

    played_s: float
    heard_s: float
    release_to_speaking_s: float
    press_to_listening_ms: int
    states: list[str]
    log: str

    @property
    def share(self) -> float:
        return self.heard_s / self.played_s


def _connected(daemon: Daemon, recording: RoomRecording | LazyRecording) -> None:
    """A session with its agent before the measured turn, so that turn's press does not have to wait for a join
    (a loaded machine's slow join plus a long phrase would hold the button into its 10 s long press): press, wait
    for the agent, release at once (an empty turn it answers), wait until it listens again."""
    mark = daemon.mark()
    daemon.ctl("press")
    daemon.wait_state("listening", timeout=40, after=mark)
    wait_for(lambda: _route(daemon) == "live", 15, "the device's mic to go live (the agent took the turn)")
    mark = daemon.mark()
    daemon.ctl("release")
    wait_for(lambda: len(recording.events("llm_reply")) > 0, 20, "the agent to answer the empty turn")
    wait_for(lambda: "speaking" in daemon.states()[mark:] and daemon.states()[-1] == "listening", 30,
             "the agent to listen again")


def _held_turn(daemon: Daemon, recording: RoomRecording | LazyRecording, audio_rig: Any, wav: Path,
               fault: Callable[[], None] | None = None, fault_after_s: float = 0.0, *,
               warm: bool = False, speak_at_press: bool = False) -> HeldTurn:
    """Press, speak `wav` holding the button — `fault()` runs `fault_after_s` into the speech — release, and wait
    for the agent's final transcript and its answer. Cold (a new session): the press starts the session and the
    speech starts once the mic is live, or with `speak_at_press` at once (it rides the pre-connect buffer while the
    room is joined). `warm`: the session is `_connected` first; the speech starts once the agent has taken the turn
    (its input is off until then)."""
    if warm:
        _connected(daemon, recording)
    log_at = len(daemon.log())
    mark = daemon.mark()
    turns_before = len(recording.events("input_enabled")) if warm else 0  # cold: its room is not named yet
    daemon.ctl("press")
    if not warm and not speak_at_press:
        daemon.wait_state("listening", timeout=40, after=mark)
        wait_for(lambda: _route(daemon) == "live", 15, "the device's mic to go live (the agent took the turn)")
    if not speak_at_press:
        wait_for(lambda: len(recording.events("input_enabled")) > turns_before, 15, "the agent to take the turn")
    finals_before = 0 if speak_at_press else len(recording.events("stt_final"))
    player = play_into_mic(audio_rig.pulse_server, wav)
    if fault is not None:
        time.sleep(fault_after_s)
        fault()
    assert player.wait(timeout=60) == 0
    if speak_at_press:
        wait_for(lambda: len(recording.events("input_enabled")) > turns_before, 30, "the agent to take the turn")
    time.sleep(0.5)
    released_mark = daemon.mark()
    daemon.ctl("release")
    released = time.monotonic()
    speaking = daemon.wait_state("speaking", timeout=60, after=released_mark)
    finals = wait_for(lambda: [e for e in recording.events("stt_final")[finals_before:] if e["voiced_s"] > 0], 20,
                      "the agent's final transcript of the turn")
    return HeldTurn(played_s=voiced_seconds(wav), heard_s=finals[-1]["voiced_s"],
                    release_to_speaking_s=speaking["seen_monotonic"] - released,
                    press_to_listening_ms=int(daemon.snapshot()["metrics"].get("press_to_listening_ms") or 0),
                    states=daemon.states()[mark:],
                    log=daemon.log()[log_at:])


def test_ten_percent_loss_audio_keeps_flowing(server: Server, worker: Worker, start_daemon: Callable[..., Daemon],
                                               audio_rig: Any, talk: Path) -> None:
    """10 % of the device's packets dropped at random, both ways (media and signalling), from the moment the turn
    is live until the agent has answered (from before the join: the next test)."""
    daemon = start_daemon(session={"idle_timeout_s": 600})
    try:
        turn = _held_turn(daemon, _recording_of(daemon, worker), audio_rig, talk,
                          fault=lambda: network.loss(server.ns, LOSS_PERCENT), warm=True)
        dropped = network.counted_packets(server.ns)
    finally:
        network.clear(server.ns)
    print(f"{LOSS_PERCENT} % loss: {dropped} packets dropped; the agent's STT got {turn.heard_s:.2f} s of speech "
          f"of {turn.played_s:.2f} s played ({turn.share:.0%}); release → speaking {turn.release_to_speaking_s:.2f} s; "
          f"states {turn.states}")
    assert dropped > 0
    assert "failed" not in turn.states
    assert turn.share > 0.5, "audio stopped flowing under loss"


@pytest.mark.parametrize("rate", [16000, 48000])
def test_ten_percent_loss_from_before_the_join_the_speech_said_meanwhile_reaches_the_agent(
        server: Server, worker: Worker, start_daemon: Callable[..., Daemon], audio_rig: Any, talk: Path,
        rate: int) -> None:
    """The same loss from before the press: the user speaks at once, while the token is fetched and the room
    joined under loss, so the speech rides the pre-connect buffer: raw PCM at the pipeline's rate on the reliable
    data channel (32 kB/s at the 16 kHz default, 96 kB/s at 48 kHz), retransmitted where the loss hits it."""
    daemon = start_daemon(session={"idle_timeout_s": 600}, audio={"sample_rate": rate})
    network.loss(server.ns, LOSS_PERCENT)
    try:
        turn = _held_turn(daemon, _recording_of(daemon, worker), audio_rig, talk, speak_at_press=True)
        dropped = network.counted_packets(server.ns)
    finally:
        network.clear(server.ns)
    sent = [line for line in turn.log.splitlines() if "pre-connect stream closed" in line]
    print(f"{LOSS_PERCENT} % loss from before the join at {rate} Hz: {dropped} packets dropped; the agent's STT got "
          f"{turn.heard_s:.2f} s of speech of {turn.played_s:.2f} s played ({turn.share:.0%}); press → listening "
          f"{turn.press_to_listening_ms} ms; release → speaking {turn.release_to_speaking_s:.2f} s; {sent}")
    assert dropped > 0
    assert "failed" not in turn.states
    assert sent and "reason=subscribed" in sent[0], "the pre-connect stream did not complete"
    assert turn.share > 0.8, "the speech said while joining under loss did not reach the agent"


def test_two_hundred_ms_delay_audio_keeps_flowing(server: Server, worker: Worker, workdir: Path,
                                                  start_daemon: Callable[..., Daemon], audio_rig: Any,
                                                  short_talk: Path) -> None:
    """Every packet of the device's connections held 200 ms (each way: 400 ms more round trip), from before the
    session starts: join, pre-connect stream, live audio, turn RPCs and the agent's answer all go through it."""
    if (why := network.delay_unavailable()) is not None:
        require(why)
    daemon = start_daemon(session={"idle_timeout_s": 600})
    delay = network.Delay(server.ns, workdir, DELAY_MS).start()
    try:
        turn = _held_turn(daemon, _recording_of(daemon, worker), audio_rig, short_talk)
    finally:
        held = delay.stop()
    print(f"{DELAY_MS} ms delay: {held} packets held; press → listening {turn.press_to_listening_ms} ms; the agent's "
          f"STT got {turn.heard_s:.2f} s of speech of {turn.played_s:.2f} s played ({turn.share:.0%}); "
          f"release → speaking {turn.release_to_speaking_s:.2f} s; "
          f"states {turn.states}")
    assert held > 100, "the delay line held (almost) nothing: the device's packets did not go through it"
    assert "failed" not in turn.states
    assert turn.share > 0.8, "audio stopped flowing under delay"


def test_a_network_cut_mid_turn_resumes_and_the_words_lost_are_accounted(
        server: Server, worker: Worker, start_daemon: Callable[..., Daemon], audio_rig: Any, talk: Path) -> None:
    """4 s of the device's network gone while the user speaks, then back with its old connections reset (an
    access point that lost its state): the SDK resumes the session. What the user said meanwhile: the part
    spoken while the SDK did not know (RTP into the void) is lost silently; the part held while it resumed is
    dropped and logged (`audio captured while reconnecting dropped ... ms=`)."""
    turn, dropped = _turn_with_a_cut(server, start_daemon(session={"idle_timeout_s": 600}), worker, audio_rig, talk,
                                     reset=True)
    held_ms = [int(m) for m in re.findall(r"audio captured while reconnecting dropped reason=.*? ms=(\d+)", turn.log)]
    print(f"{CUT_S} s cut mid-turn: {dropped} packets dropped; states {turn.states}; held while resuming and "
          f"dropped {held_ms} ms; the agent's STT got {turn.heard_s:.2f} s of speech of {turn.played_s:.2f} s played "
          f"({turn.share:.0%}); release → speaking {turn.release_to_speaking_s:.2f} s")
    assert dropped > 0
    assert "reconnecting" in turn.states and "failed" not in turn.states
    assert "mic republished" not in turn.log, "a full restart, not a resume"
    assert held_ms, "the audio held while resuming was not accounted for"
    assert turn.heard_s < turn.played_s - 1.0, "a 4 s cut lost no speech: the cut did not cut the audio"


def test_a_silent_network_cut_shorter_than_the_ping_timeout_goes_unnoticed(
        server: Server, worker: Worker, start_daemon: Callable[..., Daemon], audio_rig: Any, talk: Path) -> None:
    """The same 4 s cut, but the link comes back as it was (no connection reset): the SDK's signal ping times out
    only after 15 s and ICE fails later still, so nothing notices — no reconnect, the session goes on — and what
    was said during the cut is lost without the device knowing (RTP into the void)."""
    turn, dropped = _turn_with_a_cut(server, start_daemon(session={"idle_timeout_s": 600}), worker, audio_rig, talk,
                                     reset=False)
    print(f"{CUT_S} s silent cut mid-turn: {dropped} packets dropped; states {turn.states}; the agent's STT got "
          f"{turn.heard_s:.2f} s of speech of {turn.played_s:.2f} s played ({turn.share:.0%}); release → speaking "
          f"{turn.release_to_speaking_s:.2f} s")
    assert dropped > 0
    assert "reconnecting" not in turn.states and "failed" not in turn.states
    assert turn.heard_s < turn.played_s - 1.0, "a 4 s cut lost no speech: the cut did not cut the audio"


def _turn_with_a_cut(server: Server, daemon: Daemon, worker: Worker, audio_rig: Any, talk: Path, *,
                     reset: bool) -> tuple[HeldTurn, int]:
    """A held turn whose speech is cut CUT_S from 1 s in; returns it and the packets the cut dropped."""
    dropped: list[int] = []

    def cut() -> None:
        network.cut(server.ns)
        time.sleep(CUT_S)
        dropped.append(network.counted_packets(server.ns))
        network.restore(server.ns, reset=reset)

    try:
        turn = _held_turn(daemon, _recording_of(daemon, worker), audio_rig, talk, fault=cut, fault_after_s=1.0,
                          warm=True)
    finally:
        network.clear(server.ns)
    return turn, dropped[0]


def _route(daemon: Daemon) -> str:
    session = daemon.snapshot().get("session") or {}
    return str((session.get("preconnect") or {}).get("route", ""))


def _recording_of(daemon: Daemon, worker: Worker) -> LazyRecording:
    """The agent's recording of the room the daemon's session joins (read lazily: the room is named at join)."""
    return LazyRecording(lambda: worker.room(room_of(daemon)))


class LazyRecording:
    def __init__(self, resolve: Callable[[], RoomRecording]) -> None:
        self._resolve = resolve
        self._recording: RoomRecording | None = None

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        if self._recording is None:
            self._recording = self._resolve()
        return self._recording.events(kind)


def voiced_seconds(wav: Path) -> float:
    """Seconds of 10 ms blocks above the agent's STT's speech level (tests/livekit/agent/stt.py, RMS 300)."""
    samples = read_wav(wav).astype(np.float64)
    block = RATE // 100
    n = len(samples) // block
    rms = np.sqrt(np.mean(samples[: n * block].reshape(n, block) ** 2, axis=1))
    return float(np.count_nonzero(rms > 300.0)) / 100
