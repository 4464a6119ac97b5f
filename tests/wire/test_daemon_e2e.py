"""The REAL daemon end to end: `voice-device run --simulate` in a subprocess inside the test namespace, the
virtual audio rig as its sound card, the stub SFU and its scripted agent as the server.

Speech is played into the virtual microphone with paplay, the button is pressed and released through the
control socket, and the verdict comes from what the agent recorded (`heard.wav`, `meta.json`), what the rig's
speaker played (its monitor), the daemon's states, log and metrics, and the stub's event log.

One namespace and one rig serve the module; each test runs its own stub and daemon (they differ in config or in
what the server does), except the utterance session that the first two tests share.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.programs import need
from tests.stubsfu.netns import NetNs
from tests.wire.daemon import Daemon, daemon_config, launch_daemon, wait_for
from tests.wire.harness import Stub, launch_stub
from tests.wire.rig import SpeakerRecorder, play_into_mic
from tests.wire.signals import (
    OPUS_LOOKAHEAD_S,
    RATE,
    Seam,
    correlation,
    find_lag,
    onset,
    read_wav,
    seam_offset,
    speech,
    write_wav,
)

pytestmark = [pytest.mark.wire, pytest.mark.audio, pytest.mark.slow]

UTTERANCE = ("Hello there. This is the voice device speaking before the button was pressed, "
             "and it goes on talking while the agent joins the room.")
REPLY = "Thank you, I heard every word of it."
PRESS_AFTER_SPEECH_S = 0.3  # the speech starts this long BEFORE the press
AGENT_AFTER_PRESS_S = 2.0
PREROLL_MS = 500


@dataclass
class Wavs:
    utterance: Path
    reply: Path
    short: Path

    def samples(self, name: str) -> np.ndarray:
        return read_wav(getattr(self, name))


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> Wavs:
    need("espeak-ng", "sox")
    d = tmp_path_factory.mktemp("speech")
    return Wavs(utterance=write_wav(d / "utterance.wav", speech(UTTERANCE)),
                reply=write_wav(d / "reply.wav", speech(REPLY, voice="en-us", seed=5)),
                short=write_wav(d / "short.wav", speech("One two three four five.", seed=9)))


def _start(netns: NetNs, tmp: Path, pulse_server: str, *stub_args: str, **config: Any) -> tuple[Stub, Daemon]:
    stub = launch_stub(netns, tmp, *stub_args)
    try:
        cfg = daemon_config(tmp / f"daemon-{time.monotonic_ns()}.yaml", url=stub.url,
                            socket=tmp / f"ctl-{time.monotonic_ns()}.sock", preroll_ms=PREROLL_MS, **config)
        daemon = launch_daemon(netns, tmp, cfg, pulse_server)
    except BaseException:
        stub.process.stop()
        raise
    return stub, daemon


@pytest.fixture
def start(netns: NetNs, audio_rig: Any, tmp_path: Path) -> Iterator[Any]:
    """`start(*stub_args, **daemon_config)` → (stub, daemon); both stopped after the test (daemon first)."""
    started: list[tuple[Stub, Daemon]] = []

    def go(*stub_args: str, **config: Any) -> tuple[Stub, Daemon]:
        pair = _start(netns, tmp_path, audio_rig.pulse_server, *stub_args, **config)
        started.append(pair)
        return pair

    yield go
    for stub, daemon in started:
        daemon.process.stop()
        stub.process.stop()


def _meta(stub: Stub, n: int) -> dict[str, Any]:
    stub.control.flush()
    return json.loads((stub.session_dir(n) / "meta.json").read_text())


# ---- one push-to-talk utterance, spoken before the press ------------------------------------------------------


@dataclass
class Utterance:
    daemon: Daemon
    stub: Stub
    source: np.ndarray
    heard: np.ndarray
    meta: dict[str, Any]
    speaker: np.ndarray
    reply: np.ndarray
    metrics: dict[str, Any]
    exit_code: int


@pytest.fixture(scope="module")
def utterance(netns: NetNs, audio_rig: Any, wavs: Wavs, tmp_path_factory: pytest.TempPathFactory) -> Utterance:
    """Speech starts 300 ms before the press; the agent joins 2 s after it; release after the speech ends."""
    return _utterance(netns, audio_rig, wavs, tmp_path_factory.mktemp("utterance"))


@pytest.fixture(scope="module")
def utterance_dsp(netns: NetNs, audio_rig: Any, wavs: Wavs, tmp_path_factory: pytest.TempPathFactory) -> Utterance:
    """The same, with the audio processing a device ships with (echo canceller, noise suppressor, high-pass)."""
    return _utterance(netns, audio_rig, wavs, tmp_path_factory.mktemp("utterance-dsp"), audio=SHIPPED_DSP)


SHIPPED_DSP = {"echo_cancellation": True, "noise_suppression": True, "high_pass_filter": True}


def _utterance(netns: NetNs, audio_rig: Any, wavs: Wavs, tmp: Path, audio: dict[str, Any] | None = None) -> Utterance:
    stub, daemon = _start(netns, tmp, audio_rig.pulse_server, "--agent-delay", "never", "--ptt",
                          "--agent-reply", str(wavs.reply), audio=audio)
    try:
        player = play_into_mic(audio_rig.pulse_server, wavs.utterance)
        time.sleep(PRESS_AFTER_SPEECH_S)
        daemon.ctl("press")
        pressed = time.monotonic()
        daemon.wait_state("pre-connect-buffering", timeout=15)
        time.sleep(max(0.0, pressed + AGENT_AFTER_PRESS_S - time.monotonic()))
        stub.control.agent_join()
        daemon.wait_state("listening", timeout=15)
        assert player.wait(timeout=20) == 0
        speaker = SpeakerRecorder(audio_rig.pulse_server, tmp / "speaker.raw")
        mark = daemon.mark()
        daemon.ctl("release")
        daemon.wait_state("speaking", timeout=15, after=mark)
        daemon.wait_state("listening", timeout=20, after=daemon.mark())
        time.sleep(0.3)  # the player's jitter buffer drains into the sink
        played = speaker.stop()
        metrics = daemon.snapshot()["metrics"]
        meta = _meta(stub, 1)
        heard = read_wav(stub.session_dir(1) / "heard.wav")
        exit_code = daemon.stop()
        return Utterance(daemon=daemon, stub=stub, source=wavs.samples("utterance"), heard=heard, meta=meta,
                         speaker=played, reply=wavs.samples("reply"), metrics=metrics, exit_code=exit_code)
    finally:
        daemon.process.stop()
        stub.process.stop()


def test_speech_before_the_press_reaches_the_agent_from_its_first_word(utterance: Utterance) -> None:
    source, heard = utterance.source, utterance.heard
    assert utterance.meta["preconnect_status"] == "used"
    seam = utterance.meta["live_first_sample_index"]
    lag = find_lag(source, heard[:seam])  # the pre-connect part: what the device captured, uncoded
    word = onset(source)
    assert word is not None
    # the recording begins BEFORE the utterance does (the press marked a point 500 ms back, the speech began
    # 300 ms before the press): the whole utterance is in it
    assert lag + word > 0, f"the utterance begins {-(lag + word) / RATE * 1000:.0f} ms before the recording"
    heard_word = onset(heard)
    assert heard_word is not None
    onset_error_ms = (heard_word - (lag + word)) * 1000 / RATE
    print(f"onset error {onset_error_ms:+.1f} ms; utterance starts {(lag + word) * 1000 / RATE:.0f} ms into "
          f"heard.wav; press→listening {utterance.metrics['press_to_listening_ms']} ms")
    assert abs(onset_error_ms) <= 20.0
    # the pre-connect part is the microphone's audio sample for sample (no DSP in the test config)
    start = max(0, lag)
    assert correlation(source[start - lag: seam - lag], heard[start:seam]) > 0.99


def test_live_audio_continues_exactly_where_the_preconnect_buffer_stopped(utterance: Utterance) -> None:
    meta, source, heard = utterance.meta, utterance.source, utterance.heard
    seam_index = meta["live_first_sample_index"]
    assert meta["track_id"] == meta["published_track_sid"]
    lag = find_lag(source, heard[:seam_index])
    assert seam_index - lag < len(source) - RATE // 2, "the seam must fall inside the utterance to be judged"
    seam: Seam = seam_offset(source, heard, seam_index, guess=lag)
    print(f"seam: {seam.extra_ms:+.2f} ms (before {seam.before}, after {seam.after})")
    assert seam.before.correlation > 0.99
    assert seam.after.correlation > 0.7, f"live audio after the seam is not the utterance: {seam.after}"
    # No gap (< 0), no overlap beyond the codec's pre-echo: a lost or repeated 10 ms frame fails this.
    assert -1.0 <= seam.extra_ms <= OPUS_LOOKAHEAD_S * 1000 + 1.0, seam


def test_with_the_shipped_audio_processing_the_seam_is_exact_too(utterance_dsp: Utterance) -> None:
    """The audit measured 5-19 ms of audio repeated at the seam with the defaults on (echo canceller, noise
    suppressor, high-pass): the buffer and the live track must join without a gap or an overlap with them too."""
    meta, source, heard = utterance_dsp.meta, utterance_dsp.source, utterance_dsp.heard
    assert SHIPPED_DSP.items() <= daemon_audio_defaults().items(), "the profile's defaults changed: update SHIPPED_DSP"
    seam_index = meta["live_first_sample_index"]
    lag = find_lag(source, heard[:seam_index])
    seam: Seam = seam_offset(source, heard, seam_index, guess=lag)
    print(f"seam with the shipped DSP: {seam.extra_ms:+.2f} ms (before {seam.before}, after {seam.after})")
    assert seam.before.correlation > 0.8 and seam.after.correlation > 0.6, seam
    assert -1.0 <= seam.extra_ms <= OPUS_LOOKAHEAD_S * 1000 + 1.0, seam


def daemon_audio_defaults() -> dict[str, Any]:
    from dataclasses import asdict

    from device.config.schema import AudioConfig

    return asdict(AudioConfig())


def test_the_agents_reply_is_played_on_the_speaker(utterance: Utterance) -> None:
    reply, played = utterance.reply, utterance.speaker
    assert len(played) > len(reply), "the speaker recording is shorter than the reply"
    lag = find_lag(reply, played)
    assert 0 <= lag <= len(played) - len(reply) // 2
    c = correlation(reply, played[lag:])
    print(f"reply on the speaker: correlation {c:.3f}")
    assert c > 0.6, f"what the speaker played does not match the agent's reply (correlation {c:.2f})"
    rpc = [call["method"] for call in utterance.meta["rpc_calls"]]
    assert rpc == ["start_turn", "end_turn"]
    assert utterance.exit_code == 0


# ---- connection trouble ---------------------------------------------------------------------------------------


def test_dropped_websocket_resumes_and_the_session_goes_on(start: Any, audio_rig: Any, wavs: Wavs) -> None:
    stub, daemon = start("--agent-delay", "0.3", "--ptt")
    daemon.ctl("press")
    daemon.wait_state("listening", timeout=20)
    first_sid = _meta(stub, 1)["published_track_sid"]
    mark = daemon.mark()
    assert stub.control.drop_websocket()["dropped"] == 1
    daemon.wait_state("reconnecting", timeout=15, after=mark)
    daemon.wait_state("listening", timeout=20, after=mark)
    resumed = wait_for(lambda: stub.events("participant_resumed"), 10, "the stub to see the resume")
    assert resumed[0]["sid"] == stub.events("participant_joined")[0]["sid"]
    # the session goes on: a turn after the resume is heard and answered on the same track
    player = play_into_mic(audio_rig.pulse_server, wavs.short)
    assert player.wait(timeout=15) == 0
    mark = daemon.mark()
    daemon.ctl("release")
    daemon.wait_state("speaking", timeout=15, after=mark)
    meta = _meta(stub, 1)
    assert meta["published_track_sid"] == first_sid
    assert [c["method"] for c in meta["rpc_calls"]] == ["start_turn", "end_turn"]
    assert not stub.session_dir(2).exists(), "a resume must not republish the microphone"
    metrics = daemon.snapshot()["metrics"]
    assert metrics["reconnects"] == 1 and not metrics["failures"]
    assert "failed" not in daemon.states()


def test_leave_reconnect_rejoins_with_a_new_sid_and_resends_the_buffer(start: Any, audio_rig: Any,
                                                                       wavs: Wavs) -> None:
    stub, daemon = start("--agent-delay", "0.3", "--ptt")
    daemon.ctl("press")
    daemon.wait_state("listening", timeout=20)
    first = _meta(stub, 1)
    mark = daemon.mark()
    player = play_into_mic(audio_rig.pulse_server, wavs.short)  # speech while the device rejoins
    stub.control.leave("reconnect")
    daemon.wait_state("reconnecting", timeout=15, after=mark)
    daemon.wait_state("listening", timeout=25, after=mark)
    assert player.wait(timeout=15) == 0
    joins = stub.events("participant_joined")
    assert len(joins) == 2 and joins[0]["sid"] != joins[1]["sid"], "a full rejoin gets a new participant SID"
    second = wait_for(lambda: (m := _meta(stub, 2))["preconnect_status"] != "pending" and m, 10,
                      "the agent to take the re-sent buffer")
    assert second["published_track_sid"] != first["published_track_sid"]
    assert second["preconnect_status"] == "used"
    assert second["track_id"] == second["published_track_sid"], "the re-sent buffer names the NEW track"
    assert second["preconnect_samples"] > 0
    assert "reason=subscribed" in daemon.log().split("mic republished")[-1]
    assert "failed" not in daemon.states()


def test_bad_token_fails_once_with_reason_auth_and_no_retry_storm(start: Any) -> None:
    stub, daemon = start("--agent-delay", "never", api_secret="not-the-secret")
    daemon.ctl("press")
    failed = daemon.wait_state("failed", timeout=20)
    assert failed["reason"] == "auth"
    refused = stub.events("join_refused")
    assert refused and all(e["status"] == 401 for e in refused)
    # the policy's budget for a refused token: the first attempt, then one with a fresh token, then none
    attempts = len(refused)
    assert attempts <= 2, refused
    time.sleep(3.0)  # several backoff periods (base 1 s): a retry would have come by now
    assert len(stub.events("join_refused")) == attempts, stub.events("join_refused")
    assert daemon.log().count("session connecting") == attempts
    assert not stub.events("participant_joined")
    assert daemon.snapshot()["state"] == "failed"
    log = daemon.log()
    problems = [line for line in log.splitlines() if re.match(r"(\S+ )?(warning|error|critical) ", line)
                and "config holds secrets" not in line and "token source=local" not in line
                and "no state directory" not in line]  # development's warnings: this daemon runs without a state dir
    assert len(problems) == 1 and "reason=auth" in problems[0], problems
    assert "not-the-secret" not in log and "Traceback" not in log


def test_agent_that_never_joins_fails_at_the_timeout_and_drops_the_buffer(start: Any, audio_rig: Any,
                                                                          wavs: Wavs) -> None:
    timeout_s = 2.0
    stub, daemon = start("--agent-delay", "never", agent_connect_timeout_s=timeout_s)
    player = play_into_mic(audio_rig.pulse_server, wavs.short)
    daemon.ctl("press")
    pressed = time.monotonic()
    daemon.wait_state("pre-connect-buffering", timeout=15)
    failed = daemon.wait_state("failed", timeout=timeout_s + 10)
    assert failed["reason"] == "agent-did-not-join"
    assert failed["seen_monotonic"] - pressed >= timeout_s, "failed before the agent's time was up"
    player.wait(timeout=15)
    dropped = wait_for(lambda: re.search(r"pre-connect buffer dropped reason=.* samples=(\d+)", daemon.log()), 5,
                       "the buffer-dropped log line")
    assert int(dropped.group(1)) > 0
    assert not stub.events("stream_opened"), "nothing may reach the room once the agent is given up on"
    assert daemon.snapshot()["metrics"]["preconnect_bytes_sent"] == 0
