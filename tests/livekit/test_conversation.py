"""One long push-to-talk session on the REAL stack: the daemon, livekit-server v1.13.5, and a livekit-agents
worker running an AgentSession (recording STT, scripted LLM, espeak-ng TTS, silero VAD).

Speech starts before the press; the agent is dispatched by the name in the device's token; the session's own
room_io takes the pre-connect buffer; what the agent's STT was fed is compared with the reference speech. The
agent answers start_turn late (conftest.START_TURN_DELAY_S): without the device holding its stream open until
that answer, the agent would discard the whole buffer. The same session then sends typed text, shows the agent's
transcripts, and outlives its token: the token expires (and the server's one-minute leeway passes), the device's
network is cut, and the session resumes on the token the server refreshed. Every packet of the module is
captured and must stay inside the namespace.
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
from tests.programs import need
from tests.wire.daemon import Daemon
from tests.wire.harness import PYTHON, ROOT
from tests.wire.rig import play_into_mic
from tests.wire.signals import (
    OPUS_LOOKAHEAD_S,
    RATE,
    continuation,
    correlation,
    find_lag,
    first_sound,
    local_lag,
    onset,
    read_wav,
    speech,
    voices,
    write_wav,
)

pytestmark = [pytest.mark.audio, pytest.mark.slow]

UTTERANCE = ("Hello there. This is the voice device speaking before the button was pressed, "
             "and it goes on talking while the agent joins the room.")
# Two more voices under the first, staggered, so the seam (wherever the join puts it) never falls on a pause
OTHER_VOICES = [("Meanwhile a second voice keeps counting: one, two, three, four, five, six, seven, eight, nine, ten, "
                 "eleven, twelve.", "en+f3"),
                ("And a third one reads the alphabet: a b c d e f g h i j k l m n o p q r s t u v w x y z, and again.",
                 "en+m3")]
TYPED = "What is the weather like"
PRESS_AFTER_SPEECH_S = 0.3
PREROLL_MS = 500
TOKEN_TTL_S = 15
SERVER_LEEWAY_S = 60  # livekit/protocol auth/verifier.go: tokenLeeway = time.Minute
CUT_S = 8.0  # silent, then the device's old connections are reset (tests/livekit/network.py)
# The uplink routes whole reader chunks (audio.block_ms, 30 ms by default): a seam error loses or repeats one, and
# moves the live audio by >= 30 ms. The receiver adds the codec's look-ahead (Opus 6.5 ms) and whatever its jitter
# buffer (NetEQ) expands its first packets by: the first windows measured +0.5 to +5.6 ms in all, later ones up to
# +14 ms. Judged from -5 ms to 5 ms short of a chunk.
DEVICE_CHUNK_MS = 30
SEAM_SLACK_MS = 5.0


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
def session(server: Server, module_worker: Worker, audio_rig: Any, workdir: Path) -> Iterator[Session]:
    need("espeak-ng", "sox")
    wavs = {"utterance": write_wav(workdir / "utterance.wav", voices([(UTTERANCE, "en"), *OTHER_VOICES])),
            "short": write_wav(workdir / "short.wav", speech("One two three four five.", seed=9))}
    room = f"vd-conv-{secrets.token_hex(3)}"
    token = device_token(room, "device-conv", ttl=timedelta(seconds=TOKEN_TTL_S))
    expires = time.time() + TOKEN_TTL_S
    daemon = launch_real_daemon(server, workdir, audio_rig.pulse_server, preroll_ms=PREROLL_MS,
                                agent_connect_timeout_s=20.0, session={"idle_timeout_s": 600},
                                livekit={"token_source": "literal", "token": token})
    try:
        yield Session(daemon=daemon, room=room, token=token, expires=expires, recording=module_worker.room(room),
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


def test_live_audio_continues_where_the_buffer_stopped_no_chunk_lost_or_repeated(first_turn: FirstTurn) -> None:
    """The agent's receiver plays digital silence until its first decoded packet (libwebrtc's playout): that run
    is the receiver's, not the device's (the test speech is never digital zero). After it, the live audio must
    continue where the buffer stopped, delayed by the codec's look-ahead (Opus 6.5 ms) and by what the receiver's
    jitter buffer expands its first packets by; a device chunk lost shows as about −30 ms, one sent twice as
    +30 ms. The reference is three voices at once, so the 20 ms windows judged right after the seam always hold
    speech; each window's own lag is printed (a step between windows is the jitter buffer stretching, a low
    correlation later on its concealment when the machine starves it); the first 60 ms decide. The
    device's own seam is sample-exact (tests/wire, tests/session), which the receiver's stretching hides here."""
    seam_index = round(first_turn.pushed_s * RATE)
    source, heard = first_turn.source, first_turn.heard
    lag = find_lag(source, heard[:seam_index])
    assert seam_index - lag < len(source) - RATE, "the seam must fall inside the utterance to be judged"
    before = local_lag(source, heard, seam_index - RATE // 20, RATE // 20, lag)
    silence = first_sound(heard[seam_index:seam_index + 2 * RATE])  # where the decoded live audio begins
    assert silence is not None, "no live audio after the pre-connect buffer"
    live = continuation(source, heard, seam_index + silence, before.lag + silence)
    extra_ms = [(w.lag - before.lag - silence) * 1000 / RATE for w in live]
    print(f"seam: receiver's silence {silence * 1000 / RATE:.0f} ms; then per 20 ms window the live audio sits at "
          + ", ".join(f"{e:+.1f} ms (r {w.correlation:.2f})" for e, w in zip(extra_ms, live, strict=True))
          + f" (Opus look-ahead {OPUS_LOOKAHEAD_S * 1000:.1f} ms); before the seam {before}")
    assert before.correlation > 0.99
    # the first windows decide: later ones can be the receiver's concealment when a loaded machine starves it
    judged = [e for e, w in zip(extra_ms[:3], live[:3], strict=True) if w.correlation > 0.8]
    assert judged, f"the live audio's first 60 ms are not the utterance continuing: {live[:3]}"
    # + : audio the live side repeats (or the codec's pre-echo, up to its look-ahead); − : audio lost
    assert -SEAM_SLACK_MS <= judged[0] <= DEVICE_CHUNK_MS - SEAM_SLACK_MS, f"live audio at {judged[0]:+.1f} ms"


def test_the_stream_stayed_open_until_the_agent_had_taken_the_turn(session: Session, first_turn: FirstTurn) -> None:
    """The agent's input was off until its (late) start_turn ran: its pre-connect handler pushed the buffer after
    that, so none of it was discarded. Without the device waiting for the answer (routing.Facts.turn_pending)
    the buffer completed at the subscription, ~0.5 s too early, and the STT got none of the pre-roll."""
    enabled = session.recording.events("input_enabled")
    pushed = [e for e in session.recording.events("preconnect") if e["message"].endswith("buffer pushed")]
    assert enabled and pushed
    print(f"agent input enabled at +0 ms; buffer pushed at {(pushed[0]['t'] - enabled[0]['t']) * 1000:+.0f} ms")
    assert pushed[0]["t"] >= enabled[0]["t"]
    assert re.search(r"pre-connect stream closed reason=subscribed", session.daemon.log())


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
    """Wait out the token (and the server's leeway), prove it is dead, then cut the device's network: 8 s silent,
    then back with the device's old connections reset, so the SDK finds its websocket broken on a network that
    works and resumes. (A silent cut alone, shorter than the SDK's 15 s ping timeout, is never noticed: no
    resume, nothing refreshed is used. One longer than that is noticed while still cut, the SDK's first resume
    attempt fails, and it escalates to a full restart: livekit rust-sdks rtc_engine reconnect logic.)"""
    wait = session.expires + SERVER_LEEWAY_S + 2 - time.time()
    if wait > 0:
        time.sleep(wait)
    original = server.admin("try-join", session.token)
    assert session.daemon.snapshot()["state"] == "listening", "the session did not outlive its token"
    mark, log_at, server_at = session.daemon.mark(), len(session.daemon.log()), len(server.log())
    cut_at = time.time()
    network.cut(server.ns)
    try:
        time.sleep(CUT_S)
        dropped = network.counted_packets(server.ns)
    finally:
        network.restore(server.ns, reset=True)
    try:
        session.daemon.wait_state("reconnecting", timeout=20, after=mark)
        session.daemon.wait_state("listening", timeout=60, after=mark)
    finally:
        network.clear(server.ns)
    states = session.daemon.states()[mark:]
    before = len(session.recording.events("rpc"))
    _turn(session, audio_rig, session.speech["short"], before_press_s=0.0)
    return {"original": original, "states": states, "dropped": dropped, "rpcs_before": before, "cut_at": cut_at,
            "daemon_log": session.daemon.log()[log_at:], "before_log": session.daemon.log()[:log_at],
            "server_log": server.log()[server_at:]}


def test_the_session_outlives_its_token_and_then_resumes_after_a_network_cut(session: Session,
                                                                            after_expiry: dict[str, Any]) -> None:
    """The resume after the cut was made with the token the server refreshed: the original was refused (401)
    by then, the server accepted the device's reconnect, the SDK resumed (same mic track, no republish) and the
    device never fetched a token again (a literal token: a fresh fetch could only give the expired one)."""
    device_lines = [line for line in after_expiry["server_log"].splitlines() if '"participant": "device-conv"' in line]
    resumed = [line for line in device_lines if "resuming RTC session" in line]
    started = [line for line in device_lines if "starting RTC session" in line]
    print(f"original token now: {after_expiry['original']}; states over the {CUT_S} s cut: {after_expiry['states']}; "
          f"packets dropped {after_expiry['dropped']}; the server resumed the device {len(resumed)}x, "
          f"started it anew {len(started)}x")
    assert after_expiry["original"].startswith("refused:") and "401" in after_expiry["original"]
    assert "token refreshed by the server" in after_expiry["before_log"]
    assert after_expiry["dropped"] > 0, "the cut dropped nothing: it was not a cut"
    assert "reconnecting" in after_expiry["states"] and "failed" not in after_expiry["states"]
    assert resumed and not started, "the server did not resume the device's session"
    assert "mic republished" not in after_expiry["daemon_log"], "a full restart, not a resume"
    assert "session connecting" not in after_expiry["daemon_log"], "the device started over with a token fetch"
    assert not session.daemon.snapshot()["metrics"].get("failures")
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


def test_no_packet_left_the_namespace(capture: Capture, first_turn: FirstTurn, typed: list[str]) -> None:
    """Every packet of the module so far (server start, dispatch, the conversation, the token's expiry and the
    cut when they ran) went between the namespace's own addresses."""
    packets = capture.stop()
    print(f"{len(packets)} packets captured in the namespace; foreign: {capture.foreign()[:5]}")
    assert len(packets) > 1000, "the capture saw almost nothing: it proves nothing"
    assert capture.foreign() == []
