"""The speaker guard on its own: a real player whose output callback is driven by hand, the real models on what
it played, a hand-set clock. The rig test (test_wakeword_rig.py) puts it on the looped-back room."""

from __future__ import annotations

import numpy as np
import pytest

from device.audio.player import Player
from device.audio.wake.detector import Detection, WakeWordDetector
from device.audio.wake.listener import WakeWordListener
from device.audio.wake.speaker_guard import BARGE_IN_CUTOFF_SCALE, FAR_END_CUTOFF_SCALE, PLAYING_HOLD_S, SpeakerGuard
from tests.audio.corpus import positive_clips

RATE = 48000


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Rig:
    """A player with no device: `play(samples)` runs its output callback over them block by block, the clock and
    the guard following, as PortAudio and the listener's loop would."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.player = Player(RATE, jitter_ms=20, volume=1.0)
        self.rates: list[int] = []
        self.guard = SpeakerGuard(self.player, self._detector, self.capture_time, clock=self.clock)

    def _detector(self, rate: int) -> WakeWordDetector:
        self.rates.append(rate)
        return WakeWordDetector(["okay_nabu", "alexa"], rate, cutoffs={"okay_nabu": 0.85 * FAR_END_CUTOFF_SCALE,
                                                                       "alexa": 0.9 * FAR_END_CUTOFF_SCALE})

    def capture_time(self, index: int) -> float:
        return index / RATE  # mic ring index → seconds (the tests place mic detections by it)

    def play(self, samples: np.ndarray, then_silence_s: float = 0.0) -> None:
        self.player.push_samples(samples.astype(np.int16), RATE)
        self.player.end()
        block = self.player.block
        blocks = (len(samples) + int(then_silence_s * RATE)) // block + 2
        for _ in range(blocks):
            self.clock.t += block / RATE
            self.player.callback(None, block, {}, 0)
            self.player.last_callback_monotonic = self.clock.t  # the clock the guard dates the speaker by
            self.guard.follow()


def mic(model: str, at_s: float) -> Detection:
    index = int(at_s * RATE)
    return Detection(model, 0.9, index, index - RATE, index - RATE // 5)


@pytest.fixture(scope="module")
def clip(speech) -> np.ndarray:
    return next(c for c in positive_clips(speech, "okay_nabu") if (c.voice, c.wpm) == ("en-us", 150)).samples


def test_the_speaker_saying_the_wake_word_vetoes_the_mics_detection_of_it_within_the_window(speech, clip) -> None:
    rig = Rig()
    rig.play(speech.say("here is the news for today", "en-us", 170))
    rig.play(clip, then_silence_s=0.5)
    assert rig.guard.heard_on_speaker == 1
    said_at = rig.clock.t - 0.5  # about when the speaker finished the phrase
    assert rig.guard.vetoes(mic("okay_nabu", said_at + 0.1))  # its echo, heard by the mic a moment later
    assert rig.guard.vetoed == 1
    assert not rig.guard.vetoes(mic("alexa", said_at + 0.1))  # another word: not what the speaker said
    assert not rig.guard.vetoes(mic("okay_nabu", said_at + 3.0))  # the user, seconds later
    assert rig.guard.vetoed == 1


def test_what_the_speaker_plays_without_the_wake_word_vetoes_nothing(speech) -> None:
    rig = Rig()
    rig.play(speech.say("the weather is sunny with a little wind in the afternoon", "en-us", 150))
    assert rig.guard.heard_on_speaker == 0
    assert not rig.guard.vetoes(mic("okay_nabu", rig.clock.t))


def test_while_the_speaker_plays_the_mics_cutoffs_are_lowered_and_restored_after(speech) -> None:
    rig = Rig()
    assert rig.guard.cutoff_scale() == 1.0
    rig.play(speech.say("one moment please", "en", 170))
    assert rig.guard.speaker_playing and rig.guard.cutoff_scale() == BARGE_IN_CUTOFF_SCALE
    rig.play(np.zeros(RATE // 10, np.int16), then_silence_s=PLAYING_HOLD_S + 0.1)  # an idle stream: silence
    assert not rig.guard.speaker_playing and rig.guard.cutoff_scale() == 1.0


def test_a_new_output_rate_gets_a_far_end_detector_at_that_rate(speech, clip) -> None:
    rig = Rig()
    rig.guard.follow()
    rig.player.attach(16000, 320)  # the output device reopened at 16 kHz: a new played ring
    rig.player._filling = False  # (its pacing wait is for a real stream)
    rig.play(clip, then_silence_s=0.5)  # pushed at 48 kHz, played at 16
    assert rig.rates == [48000, 16000] and rig.guard.heard_on_speaker == 1


class FakeEars:
    """Hands the listener one chunk of the mic's ring per call of `feed`, like the pump."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, np.ndarray]] = []

    def now_index(self) -> int:
        return 0

    def reader(self, start_index: int, *, reuse: bool = False, live: bool = True):
        ears = self

        class Reader:
            closed = False

            def __aiter__(self):
                return self

            async def __anext__(self) -> tuple[int, np.ndarray]:
                if not ears.chunks:
                    raise StopAsyncIteration
                return ears.chunks.pop(0)

            def available(self) -> int:
                return sum(len(c) for _, c in ears.chunks)

            def close(self) -> None:
                self.closed = True

        return Reader()


class RecordingGuard:
    def __init__(self, veto: bool, scale: float) -> None:
        self.veto, self.scale = veto, scale
        self.follows = 0
        self.asked: list[Detection] = []

    def follow(self) -> None:
        self.follows += 1

    def cutoff_scale(self) -> float:
        return self.scale

    def vetoes(self, detection: Detection) -> bool:
        self.asked.append(detection)
        return self.veto


@pytest.mark.parametrize("veto", [True, False])
async def test_the_listener_hands_on_only_what_the_guard_does_not_veto_and_takes_its_cutoffs(speech, clip,
                                                                                             veto: bool) -> None:
    ears = FakeEars()
    audio = np.concatenate([np.zeros(RATE, np.int16), clip, np.zeros(RATE, np.int16)])
    ears.chunks = [(i, audio[i:i + 1440]) for i in range(0, len(audio) - 1440, 1440)]
    chunks = len(ears.chunks)
    heard: list[Detection] = []
    detector = WakeWordDetector(["okay_nabu"], RATE)
    guard = RecordingGuard(veto, scale=0.75)
    listener = WakeWordListener(ears, detector, heard.append, guard=guard)
    listener.start()
    assert listener._task is not None
    await listener._task
    assert guard.follows == chunks and detector._models[0].cutoff == pytest.approx(0.85 * 0.75)
    assert len(guard.asked) == 1
    assert heard == ([] if veto else guard.asked) and listener.detections == (0 if veto else 1)
