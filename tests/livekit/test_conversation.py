"""One long push-to-talk session on the REAL stack: the daemon, livekit-server v1.13.5, and a livekit-agents
worker running an AgentSession (recording STT, scripted LLM, espeak-ng TTS, silero VAD).

Speech starts before the press; the agent is dispatched by the name in the device's token; the session's own
room_io takes the pre-connect buffer; what the agent's STT was fed is compared with the reference speech. The
same session then sends typed text, shows the agent's transcripts, and outlives its token: the token expires
(and the server's one-minute leeway passes), the network is cut, and the session resumes on the token the
server refreshed. Every packet of the module is captured and must stay inside the namespace.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.livekit import network
from tests.livekit.conftest import launch_real_daemon
from tests.livekit.network import Capture
from tests.livekit.server import TURN_PORT, Server
from tests.livekit.tokens import device_token
from tests.livekit.worker_proc import RoomRecording, Worker
from tests.polling import wait_for
from tests.wire.daemon import Daemon
from tests.wire.harness import PYTHON, ROOT
from tests.wire.rig import play_into_mic
from tests.wire.signals import (
    OPUS_LOOKAHEAD_S,
    RATE,
    correlation,
    find_lag,
    local_lag,
    onset,
    read_wav,
    speech,
    speech_tools_missing,
    write_wav,
)

pytestmark = [pytest.mark.audio, pytest.mark.slow]

UTTERANCE = ("Hello there. This is the voice device speaking before the button was pressed, "
             "and it goes on talking while the agent joins the room.")
TYPED = "What is the weather like"
PRESS_AFTER_SPEECH_S = 0.3
PREROLL_MS = 500
TOKEN_TTL_S = 15
SERVER_LEEWAY_S = 60  # livekit/protocol auth/verifier.go: tokenLeeway = time.Minute
CUT_S = 8.0
RECEIVER_STRETCH_MS = 30.0


@dataclass
class Session:
    daemon: Daemon
    room: str
    token: str
    expires: float  # wall clock
    recording: RoomRecording
    speech: dict[str, Path]


@dataclass
class FirstTurn:
    states: list[str]
    stream: int
    heard: np.ndarray
    source: np.ndarray
    pushed_s: float


def _cli(session: Session, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "device", *args, "--socket", str(session.daemon.socket)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def _turn(session: Session, audio_rig: Any, wav: Path, *, before_press_s: float) -> None:
    player = play_into_mic(audio_rig.pulse_server, wav)
    time.sleep(before_press_s)
    session.daemon.ctl("press")
    session.daemon.wait_state("listening", timeout=30, after=max(0, session.daemon.mark() - 1))
    assert player.wait(timeout=30) == 0
    time.sleep(0.3)
    mark = session.daemon.mark()
    session.daemon.ctl("release")
    session.daemon.wait_state("speaking", timeout=30, after=mark)
    session.daemon.wait_state("listening", timeout=30, after=session.daemon.mark())


@pytest.fixture(scope="module")
def session(server: Server, worker: Worker, audio_rig: Any, workdir: Path) -> Iterator[Session]:
    if (why := speech_tools_missing()) is not None:
        pytest.skip(why)
    wavs = {"utterance": write_wav(workdir / "utterance.wav", speech(UTTERANCE)),
            "short": write_wav(workdir / "short.wav", speech("One two three four five.", seed=9))}
    room = f"vd-conv-{secrets.token_hex(3)}"
    token = device_token(room, "device-conv", ttl=timedelta(seconds=TOKEN_TTL_S))
    expires = time.time() + TOKEN_TTL_S
    daemon = launch_real_daemon(server, workdir, audio_rig.pulse_server, preroll_ms=PREROLL_MS,
                                agent_connect_timeout_s=20.0, session={"idle_timeout_s": 600},
                                livekit={"token_source": "literal", "token": token})
    try:
        yield Session(daemon=daemon, room=room, token=token, expires=expires, recording=worker.room(room),
                      speech=wavs)
    finally:
        daemon.process.stop()


@pytest.fixture(scope="module")
def first_turn(session: Session, audio_rig: Any) -> FirstTurn:
    """Speech starts 300 ms before the press; release after it ends; the agent answers."""
    _turn(session, audio_rig, session.speech["utterance"], before_press_s=PRESS_AFTER_SPEECH_S)
    finals = wait_for(lambda: [e for e in session.recording.events("stt_final") if e["voiced_s"] > 0], 10,
                      "the agent's STT to finalise the turn")
    stream = finals[0]["stream"]
    pushed = [e for e in session.recording.events("preconnect") if e["message"].endswith("buffer pushed")]
    return FirstTurn(states=session.daemon.states(), stream=stream, heard=session.recording.stt(stream),
                     source=read_wav(session.speech["utterance"]), pushed_s=pushed[-1]["duration"] if pushed else 0)


def test_the_agent_is_dispatched_by_the_name_in_the_devices_token(session: Session, first_turn: FirstTurn) -> None:
    jobs = session.recording.events("job")
    assert len(jobs) == 1 and jobs[0]["agent_name"] == "vd-agent" and jobs[0]["room"] == session.room
    assert re.search(r"agent joined identity=agent-AJ_\S+ name=vd-agent", session.daemon.log())


def test_device_states_follow_the_real_agent_session(session: Session, first_turn: FirstTurn) -> None:
    agent = session.recording.states()
    print(f"agent states {agent}; device states {first_turn.states}")
    assert agent[:4] == ["listening", "thinking", "speaking", "listening"]
    # a loaded machine can stall the virtual mic (failed: mic-unavailable, then back): judge the agent's states
    device = [s for s in first_turn.states if s in ("initializing", "listening", "thinking", "speaking")]
    dedup = [s for i, s in enumerate(device) if i == 0 or device[i - 1] != s]
    assert first_turn.states[1] == "connecting"
    assert dedup[dedup.index("listening"):][:4] == ["listening", "thinking", "speaking", "listening"]


def test_the_real_preconnect_handler_takes_the_buffer_from_the_first_word(first_turn: FirstTurn) -> None:
    """What the agent's STT was fed begins before the speech: the pre-roll is kept and the first word whole."""
    assert first_turn.pushed_s > 0, "the agent's pre-connect handler pushed no audio into its pipeline"
    seam = round(first_turn.pushed_s * RATE)
    source, heard = first_turn.source, first_turn.heard
    lag = find_lag(source, heard[:seam])  # heard[k] == source[k - lag] in the pre-connect part (not coded)
    word = onset(source)
    assert word is not None
    lead_ms = (lag + word) * 1000 / RATE
    preroll_ms = lead_ms + (PRESS_AFTER_SPEECH_S * RATE - word) * 1000 / RATE
    print(f"pre-connect buffer {first_turn.pushed_s * 1000:.0f} ms; speech starts {lead_ms:.0f} ms into the STT's "
          f"stream; pre-roll kept ≈ {preroll_ms:.0f} ms (preroll_ms {PREROLL_MS})")
    assert lead_ms > 0, "the first word is clipped"
    first_100ms = slice(lag + word, lag + word + RATE // 10)
    c = correlation(source[word: word + RATE // 10], heard[first_100ms])
    print(f"first 100 ms of speech: correlation {c:.4f}")
    assert c > 0.99, "the first 100 ms of speech are not intact"


def test_live_audio_continues_where_the_buffer_stopped_within_the_codec_delay(first_turn: FirstTurn) -> None:
    """The agent's receiver plays digital silence until its first decoded packet (libwebrtc's playout, measured
    110–125 ms here): that run is the receiver's, not the device's (the test speech is never digital zero). The
    speech after it must continue where the buffer stopped: a lost 10 ms frame shows as < 0. Above, the Opus
    look-ahead (6.5 ms) plus what the receiver's jitter buffer (NetEQ) stretches its first packets by (measured
    +5.7 to +16.7 ms) is allowed: RECEIVER_STRETCH_MS. The device's own seam is sample-exact (tests/wire)."""
    seam_index = round(first_turn.pushed_s * RATE)
    source, heard = first_turn.source, first_turn.heard
    lag = find_lag(source, heard[:seam_index])
    assert seam_index - lag < len(source) - RATE // 2, "the seam must fall inside the utterance to be judged"
    before = local_lag(source, heard, seam_index - RATE // 20, RATE // 20, lag)
    silence = int(np.flatnonzero(heard[seam_index:] != 0)[0])
    # a 200 ms stretch (a 20 ms one can fall on the noise bed between words, which Opus does not keep sample-true)
    after = local_lag(source, heard, seam_index + silence + RATE // 100, RATE // 5, before.lag + silence,
                      search=RATE // 20)
    extra_ms = (after.lag - before.lag - silence) * 1000 / RATE
    print(f"seam: receiver's silence {silence * 1000 / RATE:.1f} ms, then speech at {extra_ms:+.2f} ms "
          f"(Opus look-ahead {OPUS_LOOKAHEAD_S * 1000:.1f} ms); before {before}, after {after}")
    assert before.correlation > 0.99
    assert after.correlation > 0.5, f"live audio after the seam is not the utterance: {after}"
    assert -1.0 <= extra_ms <= OPUS_LOOKAHEAD_S * 1000 + RECEIVER_STRETCH_MS


def test_push_to_talk_turns_go_through_the_agents_rpcs(session: Session, first_turn: FirstTurn) -> None:
    rpcs = session.recording.events("rpc")
    assert [e["method"] for e in rpcs][:2] == ["start_turn", "end_turn"]
    assert {e["caller"] for e in rpcs} == {"device-conv"}
    final = next(e for e in session.recording.events("stt_final") if e["voiced_s"] > 0)
    assert final["voiced_s"] > 3.0, final  # the whole utterance, not a fragment
    replies = session.recording.events("llm_reply")
    assert replies and replies[0]["user"] == final["text"]


@pytest.fixture(scope="module")
def typed(session: Session, first_turn: FirstTurn) -> list[str]:
    mark = session.daemon.mark()
    out = _cli(session, "say", TYPED)
    assert out.returncode == 0, out.stderr
    wait_for(lambda: [e for e in session.recording.events("llm_reply") if e["user"] == TYPED], 20,
             "the agent to answer the typed text")
    session.daemon.wait_state("speaking", timeout=30, after=mark)
    session.daemon.wait_state("listening", timeout=30, after=session.daemon.mark())
    return session.daemon.states()[mark:]


def test_voice_device_say_reaches_the_agent_as_chat(session: Session, typed: list[str]) -> None:
    assert [e for e in session.recording.events("conversation_item") if e["role"] == "user" and e["text"] == TYPED]
    assert "thinking" in typed or "speaking" in typed


def test_voice_device_status_shows_the_agents_transcriptions(session: Session, typed: list[str]) -> None:
    def shown() -> str | None:
        out = _cli(session, "status").stdout
        return out if f"You said: {TYPED}." in out else None

    out = wait_for(shown, 15, "the agent's transcript in `voice-device status`")
    print(out)
    lines = out.splitlines()
    transcripts = lines[lines.index("transcripts:") + 1:]
    assert any(line.startswith("  device-conv: heard ") for line in transcripts), transcripts
    assert any(line.startswith("  agent-AJ_") and f"You said: {TYPED}." in line for line in transcripts)


@pytest.fixture(scope="module")
def after_expiry(session: Session, server: Server, typed: list[str], audio_rig: Any) -> dict[str, Any]:
    """Wait out the token (and the server's leeway), prove it is dead, then cut the network."""
    wait = session.expires + SERVER_LEEWAY_S + 2 - time.time()
    if wait > 0:
        time.sleep(wait)
    refused = server.admin("try-join", device_token(session.room, "device-probe", ttl=timedelta(seconds=1),
                                                    agent_name=None))
    original = server.admin("try-join", session.token)
    assert session.daemon.snapshot()["state"] == "listening", "the session did not outlive its token"
    mark = session.daemon.mark()
    network.cut(server.ns)
    try:
        time.sleep(CUT_S)
    finally:
        dropped = network.dropped_packets(server.ns)
        network.restore(server.ns)
    session.daemon.wait_state("reconnecting", timeout=20, after=mark)
    session.daemon.wait_state("listening", timeout=60, after=mark)
    states = session.daemon.states()[mark:]
    before = len(session.recording.events("rpc"))
    _turn(session, audio_rig, session.speech["short"], before_press_s=0.0)
    return {"original": original, "probe": refused, "states": states, "dropped": dropped,
            "rpcs_before": before}


def test_the_session_outlives_its_token_and_then_survives_a_network_cut(session: Session,
                                                                       after_expiry: dict[str, Any]) -> None:
    print(f"original token now: {after_expiry['original']}; states over the {CUT_S} s cut: "
          f"{after_expiry['states']}; packets dropped {after_expiry['dropped']}")
    assert after_expiry["original"].startswith("refused:") and "401" in after_expiry["original"]
    assert after_expiry["dropped"] > 0, "the cut dropped nothing: it was not a cut"
    metrics = session.daemon.snapshot()["metrics"]
    assert not metrics.get("failures"), metrics
    assert "failed" not in after_expiry["states"]
    rpcs = session.recording.events("rpc")[after_expiry["rpcs_before"]:]
    assert [e["method"] for e in rpcs] == ["start_turn", "end_turn"], "no turn after the cut"
    assert len(session.recording.events("job")) == 1, "the session was resumed, not a new room and agent"


def test_the_ice_servers_handed_to_clients_are_inside_the_namespace(server: Server) -> None:
    out = subprocess.run(server.ns.command([PYTHON, "-m", "tests.livekit.join_probe", "--url", server.url,
                                            "--token", device_token("vd-probe", "probe", agent_name=None)]),
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    join = json.loads(out.stdout.splitlines()[-1])
    urls = [u for s in join["ice_servers"] for u in s["urls"]]
    print(f"server {join['server_version']} ICE servers: {urls}")
    assert urls, "no ICE server at all: the client would fall back to nothing, but this proves nothing"
    assert all(f"{server.ns.server_ip}:{TURN_PORT}" in u for u in urls), urls


def test_no_packet_left_the_namespace(capture: Capture, after_expiry: dict[str, Any]) -> None:
    packets = capture.stop()
    print(f"{len(packets)} packets captured in the namespace; foreign: {capture.foreign()[:5]}")
    assert len(packets) > 1000, "the capture saw almost nothing: it proves nothing"
    assert capture.foreign() == []
