"""The wake word end to end: the REAL daemon in `session.mode: wake_word` (`voice-device run --simulate`), the
virtual audio rig as its sound card, the stub SFU and its scripted agent (VAD turns: no push-to-talk RPCs).

espeak-ng says "okay nabu ..." into the virtual microphone with paplay; nobody touches the button. The verdict
comes from what the agent recorded (`heard.wav`, `meta.json`), the daemon's states, log and status, and the
stub's event log. Each test runs its own stub and daemon.
"""

from __future__ import annotations

import json
import re
import threading
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
from tests.wire.rig import play_into_mic
from tests.wire.signals import (
    OPUS_LOOKAHEAD_S,
    RATE,
    Seam,
    continuation,
    correlation,
    find_lag,
    onset,
    read_wav,
    seam_offset,
    speech,
    write_wav,
)

pytestmark = [pytest.mark.wire, pytest.mark.audio, pytest.mark.slow]

ONE_BREATH = ("okay nabu, what's the weather in paris today, and will it rain tomorrow, "
              "or should I take an umbrella with me when I go out")
WAKE_VOICE = "en-us"  # a voice the okay_nabu model hears (tests/audio/corpus.py)
DSP_ON = {"echo_cancellation": True, "noise_suppression": True, "high_pass_filter": True}
HEARD = re.compile(r"wake word heard model=(\S+) probability=(\S+) index=(\d+) phrase_start=(\d+) phrase_end=(\d+)")


@dataclass
class Wavs:
    dir: Path

    def make(self, name: str, text: str, **kwargs: Any) -> Path:
        path = self.dir / f"{name}.wav"
        if not path.exists():
            write_wav(path, speech(text, **kwargs))
        return path


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> Wavs:
    need("espeak-ng", "sox")
    return Wavs(tmp_path_factory.mktemp("wake-speech"))


@pytest.fixture
def start(netns: NetNs, audio_rig: Any, tmp_path: Path) -> Iterator[Any]:
    """`start(*stub_args, **config_sections)` → (stub, daemon) in wake_word mode; both stopped after the test."""
    started: list[tuple[Stub, Daemon]] = []

    def go(*stub_args: str, wake_word: dict[str, Any] | None = None, session: dict[str, Any] | None = None,
           **sections: Any) -> tuple[Stub, Daemon]:
        stub = launch_stub(netns, tmp_path, *stub_args)
        try:
            n = time.monotonic_ns()
            cfg = daemon_config(tmp_path / f"daemon-{n}.yaml", url=stub.url, socket=tmp_path / f"ctl-{n}.sock",
                                session={"mode": "wake_word", **(session or {})},
                                wake_word={"models": ["okay_nabu"], **(wake_word or {})}, **sections)
            daemon = launch_daemon(netns, tmp_path, cfg, audio_rig.pulse_server)
        except BaseException:
            stub.process.stop()
            raise
        started.append((stub, daemon))
        return stub, daemon

    yield go
    for stub, daemon in started:
        daemon.process.stop()
        stub.process.stop()


def _meta(stub: Stub, n: int) -> dict[str, Any]:
    stub.control.flush()
    return json.loads((stub.session_dir(n) / "meta.json").read_text())


def _wake_ready(daemon: Daemon) -> None:
    """The listener runs, and has heard the room for a moment (a device that has been listening a while)."""
    wait_for(lambda: daemon.snapshot()["wake"]["listening"], 10, "the wake-word listener")
    time.sleep(1.5)


def _heard(daemon: Daemon) -> list[tuple[int, int, int]]:
    """(index, phrase_start, phrase_end) of each detection the daemon acted on, from its log."""
    return [(int(m[2]), int(m[3]), int(m[4])) for m in HEARD.findall(daemon.log())]


def test_a_wake_phrase_and_a_command_in_one_breath_reach_the_agent_whole_across_the_seam(
        start: Any, audio_rig: Any, wavs: Wavs) -> None:
    """Nothing is pressed: "okay nabu, what's the weather ..." said in one breath opens the room, and while the
    token is fetched, the room joined and the agent (two seconds late) arrives, the words are kept and sent as
    pre-connect audio; the live track takes over without a gap.

    One retry, for one symptom only: in about one full-suite run in six (never alone, not with CPU burners beside
    it) the live audio right after the seam sits one 10 ms frame later than the pre-connect audio says, with the
    pre-connect part exact. Its cause is not found (the device's routing hands the live track the sample after the
    buffer's last under one lock; tests/session proves that sample for sample). The first attempt's figures and
    the live audio's lag window by window are printed; the second must pass as strictly."""
    run = _one_breath(start, audio_rig, wavs)
    if not _seam_holds(run.joint) and _one_frame_late(run.joint):
        live = continuation(run.source, run.heard, run.seam, run.joint.before.lag)
        print(f"RETRY: seam {run.joint.extra_ms:+.2f} ms, after {run.joint.after}; live lags per 20 ms window: "
              f"{[w.lag for w in live]}; stub meta "
              f"{ {k: v for k, v in run.meta.items() if k.startswith(('live', 'preconnect_s'))} }")
        run.daemon.stop()
        run.stub.process.stop()
        run = _one_breath(start, audio_rig, wavs)
    daemon, joint = run.daemon, run.joint
    assert joint.before.correlation > 0.99 and joint.after.correlation > 0.7, joint
    assert -1.0 <= joint.extra_ms <= OPUS_LOOKAHEAD_S * 1000 + 1.0, joint
    metrics = daemon.snapshot()["metrics"]
    print(f"wake → listening {metrics.get('wake_to_listening_ms_p50')} ms (agent 2 s late)")
    assert metrics["wake_detections"] == 1 and metrics["conversations_wake_word"] == 1
    assert metrics["wake_to_listening_count"] == 1 and metrics["wake_to_listening_ms_p50"] > 2000


def _seam_holds(joint: Seam) -> bool:
    return (joint.before.correlation > 0.99 and joint.after.correlation > 0.7
            and -1.0 <= joint.extra_ms <= OPUS_LOOKAHEAD_S * 1000 + 1.0)


def _one_frame_late(joint: Seam) -> bool:
    """The known symptom: the pre-connect part exact, the live audio where it belongs plus one 10 ms frame."""
    frame_ms = 10.0
    return (joint.before.correlation > 0.99
            and -1.0 + frame_ms <= joint.extra_ms <= OPUS_LOOKAHEAD_S * 1000 + 1.0 + frame_ms)


@dataclass(frozen=True)
class OneBreath:
    """One run of the one-breath scenario: who ran it, what was said and heard, and the seam as measured."""

    stub: Stub
    daemon: Daemon
    source: np.ndarray
    heard: np.ndarray
    meta: dict[str, Any]
    seam: int
    joint: Seam


def _one_breath(start: Any, audio_rig: Any, wavs: Wavs) -> OneBreath:
    """The scenario, every check but the seam's; the seam as measured."""
    source_wav = wavs.make("one-breath", ONE_BREATH, voice=WAKE_VOICE)
    # the wake cue would play into the rig's microphone (echo canceller off here, so the audio is the WAV's)
    stub, daemon = start("--agent-delay", "2", "--agent-reply", str(wavs.make("reply", "Sunny, no umbrella.")),
                         wake_word={"follow_up_s": 10}, audio={"earcons": {"wake": None, "listening": None}})
    _wake_ready(daemon)
    player = play_into_mic(audio_rig.pulse_server, source_wav)
    daemon.wait_state("connecting", timeout=10)
    daemon.wait_state("pre-connect-buffering", timeout=15)
    daemon.wait_state("listening", timeout=20)
    assert player.wait(timeout=20) == 0
    daemon.wait_state("speaking", timeout=15)  # the agent's turn detection took the whole request
    meta = _meta(stub, 1)
    heard = read_wav(stub.session_dir(1) / "heard.wav")
    source = read_wav(source_wav)
    (index, phrase_start, phrase_end), = _heard(daemon)
    assert meta["preconnect_status"] == "used"
    seam = meta["live_first_sample_index"]
    assert seam > 0, meta
    lag = find_lag(source, heard[:seam])  # heard[k] is source[k - lag]
    word = onset(source)
    assert word is not None
    # wake_word.send_wake_phrase (the default): the agent's audio begins before "okay"
    assert lag + word > 0, f"the wake phrase begins {-(lag + word) / RATE * 1000:.0f} ms before what the agent heard"
    # the command's first 100 ms, right after the wake phrase, are in the pre-connect audio sample for sample
    end_in_heard = phrase_end - phrase_start  # heard.wav starts at the mark, the phrase's start
    command = slice(end_in_heard, end_in_heard + RATE // 10)
    assert command.stop < seam, "the command's start must be in the pre-connect part to be judged"
    c = correlation(source[command.start - lag: command.stop - lag], heard[command])
    print(f"command's first 100 ms: correlation {c:.4f}; pre-connect {seam / RATE:.2f} s; "
          f"detection {(index - phrase_start) / RATE:.2f} s after the phrase began")
    assert c > 0.99
    assert correlation(source[max(0, -lag): seam - lag], heard[max(0, lag): seam]) > 0.99
    # no gap, no overlap at the pre-connect → live seam
    assert seam - lag < len(source) - RATE // 2, "the seam must fall inside the utterance to be judged"
    joint = seam_offset(source, heard, seam, guess=lag)
    print(f"seam: {joint.extra_ms:+.2f} ms (before {joint.before}, after {joint.after})")
    return OneBreath(stub, daemon, source, heard, meta, seam, joint)


class PlayedMeter:
    """The daemon's `audio_samples_played` (what its player handed to the speaker), sampled every 50 ms."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append((time.monotonic(), int(self.daemon.snapshot()["metrics"]["audio_samples_played"])))

    def at(self, t: float) -> int:
        return next((n for when, n in self.samples if when >= t), self.samples[-1][1])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _at(daemon: Daemon, message: dict[str, Any]) -> int:
    """The index of a state message, for `wait_state(after=...)`: what came after it."""
    return daemon.messages.index(message)


def _speak_and_wait(daemon: Daemon, audio_rig: Any, wav: Path, state: str, timeout: float = 20) -> dict[str, Any]:
    mark = daemon.mark()
    player = play_into_mic(audio_rig.pulse_server, wav)
    hit = daemon.wait_state(state, timeout=timeout, after=mark)
    player.wait(timeout=20)
    return hit


@pytest.mark.parametrize("interruptible", [True, False], ids=["agent-answers-the-new-speech", "agent-talks-on"])
def test_the_wake_word_while_the_agent_speaks_interrupts_it_and_the_agent_hears_the_new_speech(
        start: Any, audio_rig: Any, wavs: Wavs, interruptible: bool) -> None:
    """The speaker stops at once and stays silent (but for the wake cue) while the agent is still speaking; the
    microphone goes on to the agent live. (The agent plays at half volume: the rig loops the speaker into the
    microphone at full level, and the wake word is harder to hear over an echo as loud as the user: see the
    double-talk figures of tests/audio/test_wakeword_rig.py.) An agent that takes the new speech as a turn
    (AgentSession's default) answers it; one that does not (allow_interruptions=False) talks on unheard until it
    has finished."""
    story = wavs.make("story", "Once upon a time there was a small voice device that lived on a kitchen shelf. "
                      "Every morning it listened for its name, and every evening it told long stories.", voice="en")
    stop = wavs.make("okay-nabu-stop", "okay nabu, stop", voice=WAKE_VOICE)
    stub, daemon = start("--agent-delay", "0.3", "--agent-reply", str(story),
                         *(() if interruptible else ("--no-interruptible",)), audio={**DSP_ON, "volume": 0.5},
                         wake_word={"follow_up_s": 10})
    _wake_ready(daemon)
    speaking = _speak_and_wait(daemon, audio_rig, wavs.make("ask", "okay nabu, tell me a story", voice=WAKE_VOICE),
                               "speaking")
    time.sleep(2.0)  # two seconds into the agent's eight-second story
    meter = PlayedMeter(daemon)
    time.sleep(0.3)
    player = play_into_mic(audio_rig.pulse_server, stop)
    said = time.monotonic()
    wait_for(lambda: "barge-in" in daemon.log(), 5, "the barge-in")
    heard_at = time.monotonic()
    player.wait(timeout=10)
    # the agent's next state: thinking (it answers the new speech) or listening (its story played out on its side)
    after = daemon.wait_state("thinking" if interruptible else "listening", timeout=15, after=_at(daemon, speaking))
    meter.stop()
    spoke_on_s = after["seen_monotonic"] - heard_at
    played_s = (meter.at(after["seen_monotonic"]) - meter.at(heard_at + 0.1)) / RATE
    print(f"interrupted {heard_at - said:.2f} s after the wake word began; the agent spoke on for {spoke_on_s:.1f} s; "
          f"the speaker played {played_s:.2f} s meanwhile (the wake cue: {0.2:.2f} s)")
    assert played_s < 0.4, f"the speaker went on with the agent's story ({played_s:.2f} s)"
    assert (meter.at(heard_at) - meter.at(said - 0.3)) / RATE > 0.5, "the story was not playing before"
    assert spoke_on_s > (0.5 if interruptible else 3.0)
    metrics = daemon.snapshot()["metrics"]
    assert metrics["wake_detections"] == 2 and metrics["conversations_wake_word"] == 1  # the same conversation
    # the agent got the new speech live: it is in what the agent heard, after the story began
    meta = _meta(stub, 1)
    heard = read_wav(stub.session_dir(1) / "heard.wav")
    first_reply = meta["turns"][0]["end_sample"]
    lag = find_lag(read_wav(stop), heard[first_reply:]) + first_reply
    assert lag > first_reply and correlation(read_wav(stop)[RATE // 2:], heard[lag + RATE // 2:]) > 0.5
    if interruptible:
        assert len(meta["turns"]) >= 2 and meta["turns"][1]["start_sample"] > first_reply


def test_the_agent_saying_the_wake_word_does_not_wake_the_device(start: Any, audio_rig: Any, wavs: Wavs) -> None:
    """The rig loops the speaker into the microphone: the agent's voice saying "okay nabu" three times is what the
    microphone hears. The echo canceller takes most of it out, and the speaker guard knows the speaker said it."""
    quote = wavs.make("quote", "Okay nabu is my name. Okay nabu, that is what you call me. Yes: okay nabu.",
                      voice=WAKE_VOICE)
    _, daemon = start("--agent-delay", "0.3", "--agent-reply", str(quote), audio=DSP_ON,
                         wake_word={"follow_up_s": 10})
    _wake_ready(daemon)
    _speak_and_wait(daemon, audio_rig, wavs.make("name", "okay nabu, what is your name", voice=WAKE_VOICE),
                    "speaking")
    mark = daemon.mark()
    daemon.wait_state("listening", timeout=20, after=mark)
    time.sleep(1.0)  # a detection comes up to a second after the phrase
    status = daemon.snapshot()
    wake, metrics = status["wake"], status["metrics"]
    print(f"the speaker said it {wake['heard_on_speaker']} times; the mic's detector fired on it "
          f"{wake['ignored_own_voice']} times (ignored)")
    assert wake["heard_on_speaker"] >= 1, "the guard did not hear the agent say the wake word"
    assert metrics["wake_detections"] == 1, "the device woke on its own voice"
    assert "barge-in" not in daemon.log() and metrics["conversations_wake_word"] == 1
    assert daemon.states()[mark:].count("speaking") == 0  # the agent was never cut off


def test_the_follow_up_window_ends_a_silent_conversation_and_keeps_one_where_the_user_answers(
        start: Any, audio_rig: Any, wavs: Wavs) -> None:
    follow_up_s = 2.0
    # the echo canceller keeps the agent's answer, looped into the rig's microphone, from being a turn of its own
    stub, daemon = start("--agent-delay", "0.3", "--agent-reply", str(wavs.make("answer", "It is noon.")),
                         audio=DSP_ON, wake_word={"follow_up_s": follow_up_s})
    _wake_ready(daemon)
    ask = wavs.make("time", "okay nabu, what time is it", voice=WAKE_VOICE)
    # 1. nobody speaks after the answer: the window closes, the room is left, the device listens locally again
    spoke = _speak_and_wait(daemon, audio_rig, ask, "speaking")
    answered = daemon.wait_state("listening", timeout=15, after=_at(daemon, spoke))
    idle = daemon.wait_state("idle", timeout=10, after=_at(daemon, answered))
    waited = idle["seen_monotonic"] - answered["seen_monotonic"]
    print(f"the conversation ended {waited:.2f} s after the answer (follow_up_s {follow_up_s})")
    assert follow_up_s - 0.2 <= waited <= follow_up_s + 2.0
    assert "session ended reason=follow-up-over" in daemon.log()
    assert daemon.snapshot()["wake"]["listening"]
    # 2. the user answers within the window: the conversation goes on, and its window restarts after each answer
    spoke = _speak_and_wait(daemon, audio_rig, ask, "speaking")
    first = daemon.wait_state("listening", timeout=15, after=_at(daemon, spoke))
    time.sleep(0.8)
    again = _speak_and_wait(daemon, audio_rig, wavs.make("more", "and what about tomorrow?"), "speaking")
    second = daemon.wait_state("listening", timeout=15, after=_at(daemon, again))
    idle = daemon.wait_state("idle", timeout=10, after=_at(daemon, second))
    assert "idle" not in daemon.states()[_at(daemon, first):_at(daemon, second)]
    assert idle["seen_monotonic"] - second["seen_monotonic"] >= follow_up_s - 0.2
    assert len(_meta(stub, 2)["turns"]) == 2, "both turns in one conversation"
    # 3. a wake word and then nothing: a likely false wake, counted
    mark = daemon.mark()
    _speak_and_wait(daemon, audio_rig, wavs.make("okay-nabu-alone", "okay nabu", voice=WAKE_VOICE), "listening")
    daemon.wait_state("idle", timeout=20, after=mark)
    metrics = daemon.snapshot()["metrics"]
    assert metrics["conversations_wake_word"] == 3
    assert metrics["wake_conversations_without_speech"] == 1, metrics


def test_mute_stops_the_wake_word_and_survives_a_daemon_restart(start: Any, netns: NetNs, audio_rig: Any,
                                                                 wavs: Wavs, tmp_path: Path) -> None:
    _, daemon = start("--agent-delay", "0.3", daemon={"state_dir": str(tmp_path / "state")})
    _wake_ready(daemon)
    ask = wavs.make("hello", "okay nabu, hello there", voice=WAKE_VOICE)
    daemon.ctl("mute")
    daemon.wait_state("muted", timeout=5)
    wait_for(lambda: not daemon.snapshot()["wake"]["listening"], 5, "the listener to stop")
    player = play_into_mic(audio_rig.pulse_server, ask)
    player.wait(timeout=15)
    time.sleep(1.5)
    assert "connecting" not in daemon.states() and "wake word heard" not in daemon.log()
    assert daemon.stop() == 0
    # the same device after a restart: still muted, still not listening
    again = launch_daemon(netns, tmp_path, Path(daemon.process.argv[daemon.process.argv.index("--config") + 1]),
                          audio_rig.pulse_server)
    try:
        snap = again.snapshot()
        assert snap["state"] == "muted" and snap["muted"] is True and snap["wake"]["listening"] is False
        player = play_into_mic(audio_rig.pulse_server, ask)
        player.wait(timeout=15)
        time.sleep(1.5)
        assert "connecting" not in again.states() and "wake word heard" not in again.log()
        again.ctl("unmute")
        wait_for(lambda: again.snapshot()["wake"]["listening"], 5, "the listener to start again")
        time.sleep(1.5)
        mark = again.mark()
        play_into_mic(audio_rig.pulse_server, ask).wait(timeout=15)
        again.wait_state("connecting", timeout=10, after=mark)
    finally:
        again.process.stop()


@pytest.mark.parametrize("mode", ["push_to_talk", "toggle", "always_on", "wake_word"])
def test_ctl_end_and_the_agents_end_session_end_the_session_for_real_in_every_mode(start: Any, mode: str) -> None:
    stub, daemon = start("--agent-delay", "0.3", session={"mode": mode})
    for how in ("ctl end", "device.end_session"):
        mark = daemon.mark()
        at_boot = mode == "always_on" and how == "ctl end"  # always_on opened its room at boot
        if not at_boot:
            daemon.ctl("start")
        daemon.wait_state("listening", timeout=20, after=0 if at_boot else mark)
        mark = daemon.mark()
        if how == "ctl end":
            daemon.ctl("end")
        else:
            assert stub.control.agent_rpc("device.end_session")["requests"]
        daemon.wait_state("idle", timeout=10, after=mark)
        time.sleep(2.0)  # an always_on that reopened its room would have done so by now
        assert daemon.states()[mark:][-1] == "idle" and "connecting" not in daemon.states()[mark:], how
    # the agent reporting the user away ends a wake-word conversation, and only that
    mark = daemon.mark()
    daemon.ctl("start")
    daemon.wait_state("listening", timeout=20, after=mark)
    stub.control.agent_event({"type": "user_state_changed", "old_state": "listening", "new_state": "away"})
    if mode == "wake_word":
        daemon.wait_state("idle", timeout=10, after=mark)
        assert "session ended reason=user-away" in daemon.log()
    else:
        time.sleep(1.5)
        assert daemon.snapshot()["state"] == "listening"
