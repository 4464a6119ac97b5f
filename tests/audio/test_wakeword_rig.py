"""The wake word through the real audio path: espeak-ng says "okay nabu" into the virtual room (PulseAudio's
speaker looped into the microphone), PortAudio captures it, the pump runs the echo canceller, the listener feeds
the detector, and the detection's ring indices point at the phrase in what the engine captured."""

from __future__ import annotations

import asyncio
import itertools
import re

import numpy as np
import pytest

from device.audio.engine import AudioEngine
from device.audio.wake.detector import Detection, WakeWordDetector
from device.audio.wake.listener import WakeWordListener
from device.audio.wake.speaker_guard import BARGE_IN_CUTOFF_SCALE, FAR_END_CUTOFF_SCALE, SpeakerGuard
from device.cli import main
from device.config.schema import AudioConfig
from tests.audio.corpus import positive_clips
from tests.wire.rig import play_into_mic
from tests.wire.signals import find_lag, write_wav

pytestmark = pytest.mark.audio
RATE = 48000


def said(speech, voice: str = "en-us", wpm: int = 150):
    return next(c for c in positive_clips(speech, "okay_nabu") if (c.voice, c.wpm) == (voice, wpm))


async def test_okay_nabu_said_in_the_room_is_heard_with_ring_indices_on_the_phrase(audio_rig, speech, tmp_path):
    clip = said(speech)
    wav = write_wav(tmp_path / "okay-nabu.wav", clip.samples)
    # the default DSP (echo canceller, noise suppression, high-pass on) at the corpus's 48 kHz
    engine = AudioEngine(AudioConfig(sample_rate=RATE))
    heard: list[Detection] = []
    chunks: list[tuple[int, np.ndarray]] = []
    detector = WakeWordDetector(["okay_nabu"], engine.sample_rate)
    listener = WakeWordListener(engine, detector, heard.append, on_chunk=lambda i, c: chunks.append((i, c.copy())))
    await engine.start()
    try:
        listener.start()
        await asyncio.sleep(2.0)  # the models settle on the room first, as on a device that has been listening
        player = play_into_mic(audio_rig.pulse_server, wav)
        async with asyncio.timeout(10):
            while not heard:
                await asyncio.sleep(0.05)
        await asyncio.to_thread(player.wait, 10)
    finally:
        await listener.stop()
        await engine.stop()
    (d,) = heard
    assert d.model == "okay_nabu" and d.probability > 0.85
    first = chunks[0][0]
    assert all(a + x.shape[0] == b for (a, x), (b, _) in itertools.pairwise(chunks))  # nothing lost
    captured = np.concatenate([c for _, c in chunks])
    at = first + find_lag(clip.samples, captured)  # ring index of the clip's first sample
    start, end = at + clip.start, at + clip.end
    assert -0.35 <= (d.start_index - start) / RATE <= 0.05, "the phrase start is not where the phrase began"
    assert -0.15 <= (d.end_index - end) / RATE <= 0.1, "the phrase end is not where the phrase ended"
    assert 0.0 <= (d.index - end) / RATE <= 1.0, "the detection is not just after the phrase"
    assert listener.detections == 1


def guarded(engine: AudioEngine, heard: list[Detection], models: tuple[str, ...] = ("okay_nabu",)
            ) -> tuple[WakeWordListener, SpeakerGuard]:
    """The daemon's pairing (device/daemon/wake.py): the mic's listener with a guard on what the speaker plays."""
    detector = WakeWordDetector(list(models), engine.sample_rate)
    cutoffs = {n: c * FAR_END_CUTOFF_SCALE for n, c in detector.cutoffs.items()}
    guard = SpeakerGuard(engine.player, lambda rate: WakeWordDetector(list(models), rate, cutoffs=cutoffs),
                         engine.capture_time)
    return WakeWordListener(engine, detector, heard.append, guard=guard), guard


@pytest.mark.slow
@pytest.mark.parametrize(("echo_cancellation", "guard_on"),
                         [(True, True), (True, False), (False, True), (False, False)],
                         ids=["canceller+guard", "canceller-alone", "guard-alone", "neither"])
async def test_the_device_saying_the_wake_word_itself_does_not_wake_it(audio_rig, speech, echo_cancellation,
                                                                       guard_on):
    """What the speaker plays reaches the mic (the rig loops it back sample for sample). The detector listens to
    the echo canceller's output, and the speaker guard drops a detection of what the speaker itself said: either
    alone keeps the agent saying "okay nabu" from waking the device (the guard even with the mic's cutoff lowered
    while the speaker plays). Without both (the control) the same audio wakes it every time."""
    clips = positive_clips(speech, "okay_nabu")[:3]
    engine = AudioEngine(AudioConfig(sample_rate=RATE, echo_cancellation=echo_cancellation))
    heard: list[Detection] = []
    if guard_on:
        listener, guard = guarded(engine, heard)
        detector = listener.detector
    else:
        detector = WakeWordDetector(["okay_nabu"], engine.sample_rate)
        listener = WakeWordListener(engine, detector, heard.append)
    await engine.start()
    try:
        listener.start()
        # Four seconds of the agent talking first: the canceller converges on the echo path.
        reply = speech.say("here is the weather for today: sunny in the morning, clouds and some rain later on",
                           "en-us", 170)
        for sound in (reply, *(c.samples for c in clips)):
            engine.player.push_samples(sound, RATE)
        engine.player.end()
        async with asyncio.timeout(30):
            while engine.player.buffered_samples():
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the last phrase's detection comes up to a second after it
    finally:
        await listener.stop()
        await engine.stop()
    peak = detector.take_peaks()["okay_nabu"]
    if guard_on:
        print(f"echo canceller {'on' if echo_cancellation else 'off'}, guard on: the speaker said it "
              f"{guard.heard_on_speaker} times, the mic heard it {guard.vetoed} times (dropped), best mic score "
              f"{peak:.3f} against a cutoff lowered to {0.85 * BARGE_IN_CUTOFF_SCALE:.3f}")
        assert guard.heard_on_speaker == len(clips)
    elif echo_cancellation:
        print(f"highest okay_nabu score on its own voice through the echo canceller: {peak:.3f}")
    if echo_cancellation or guard_on:
        assert heard == [], f"woke on its own voice: {heard} (underruns {engine.stats().underruns})"
    else:
        assert len(heard) == len(clips)


@pytest.mark.slow
async def test_the_user_saying_the_wake_word_over_the_agent_is_heard(audio_rig, speech, tmp_path):
    """Double-talk: the agent speaks (looped into the mic at full level, as loud as the user) and the user says
    "okay nabu" over it. Through the canceller the phrase scores lower than in a quiet room; the guard lowers the
    cutoff while the speaker plays, and does not veto it (the speaker did not say it)."""
    engine = AudioEngine(AudioConfig())  # the defaults: canceller, noise suppression, high-pass
    heard: list[Detection] = []
    listener, guard = guarded(engine, heard)
    story = speech.say("once upon a time there was a small voice device that lived on a kitchen shelf, and every "
                       "morning it listened for its name while the kettle boiled and the radio played", "en", 150)
    said = [said_by for said_by in positive_clips(speech, "okay_nabu") if said_by.voice in ("en-us", "en", "en-us+m3")]
    peaks = []
    await engine.start()
    try:
        listener.start()
        await asyncio.sleep(1.0)
        for clip in said:
            before = len(heard)
            engine.player.push_samples(story, RATE)
            engine.player.end()
            await asyncio.sleep(2.0)  # the agent has been talking for a while
            listener.detector.take_peaks()
            wav = write_wav(tmp_path / f"{clip.voice}-{clip.wpm}.wav", clip.samples)
            await asyncio.to_thread(play_into_mic(audio_rig.pulse_server, wav).wait, 10)
            await asyncio.sleep(1.0)
            peaks.append((listener.detector.take_peaks()["okay_nabu"], len(heard) > before))
            engine.player.flush()
            await asyncio.sleep(1.0)
    finally:
        await listener.stop()
        await engine.stop()
    print("okay nabu over the agent: " + ", ".join(f"{p:.3f}{'*' if hit else ''}" for p, hit in peaks)
          + f" (cutoff while it plays {0.85 * BARGE_IN_CUTOFF_SCALE:.3f}; * = heard)")
    assert guard.vetoed == 0, "the guard took the user for the speaker"
    # At 0 dB against the agent a phrase is sometimes masked outright (scores of 0.01 to 0.5 in about one try of
    # five, measured over 15): three tries needing two failed one CI run in few; nine tries needing four keep a
    # chance failure near one run in a hundred.
    assert sum(hit for _, hit in peaks) >= 4, peaks


def test_wake_test_prints_scores_and_the_detection(audio_rig, speech, tmp_path, capsys):
    wav = write_wav(tmp_path / "okay-nabu.wav", said(speech, "en", 170).samples)

    async def speak_later() -> None:
        await asyncio.sleep(2.5)
        player = play_into_mic(audio_rig.pulse_server, wav)
        await asyncio.to_thread(player.wait, 10)

    async def both() -> int:
        speaking = asyncio.create_task(speak_later())
        code = await asyncio.to_thread(main, ["-q", "wake-test", "--seconds", "6", "--model", "okay_nabu",
                                              "--model", "alexa"])
        await speaking
        return code

    assert asyncio.run(both()) == 0
    out = capsys.readouterr().out
    assert "listening for okay_nabu (cutoff 0.85), alexa (cutoff 0.9)" in out
    lines = re.findall(r"^ +\d+\.\d s  okay_nabu \d\.\d{3}[* ]  alexa \d\.\d{3}", out, re.MULTILINE)
    assert len(lines) >= 5  # one score line a second
    assert re.search(r"okay_nabu 0\.(8[5-9]|9\d)\d\*", out)  # the second it was said, marked above the cutoff
    assert "detected okay_nabu" in out and "okay_nabu: 1 detection(s)" in out
    assert "alexa: 0 detection(s)" in out


def test_wake_test_names_a_bad_model_and_exits_2(capsys):
    assert main(["-q", "wake-test", "--model", "hey_siri"]) == 2
    assert "no built-in wake word 'hey_siri'" in capsys.readouterr().err
