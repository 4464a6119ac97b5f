"""The follow-up window's voice activity detector on generated audio: it finds each utterance once, near its
start, and stays quiet in silence, noise and (almost always) music."""

from __future__ import annotations

import numpy as np
import pytest

from device.audio.vad import VoiceActivityDetector
from tests.audio import corpus

RATE = corpus.RATE


def onsets(vad: VoiceActivityDetector, audio: np.ndarray, first: int = 0) -> list[int]:
    found = []
    for i in range(0, audio.shape[0], RATE * 30 // 1000):
        onset = vad.feed(first + i, audio[i : i + RATE * 30 // 1000])
        if onset is not None:
            found.append(onset)
    return found


@pytest.fixture(scope="module")
def utterances(speech):
    """Six sentences in six voices, 1.5 s apart, over a faint noise bed; and where each begins."""
    sentences = corpus.prose(400)
    parts, starts, at = [np.zeros(2 * RATE)], [], 2 * RATE
    for k, voice in enumerate(corpus.OTHER_VOICES[:6]):
        said = speech.say(sentences[k], voice, 160)
        s, e = corpus.sounding(said)
        starts.append(at)
        parts += [said[s:e] * 0.5, np.zeros(int(1.5 * RATE))]
        at += e - s + int(1.5 * RATE)
    body = np.concatenate(parts)
    return corpus.mix(body, corpus.noise(body.shape[0], 60.0, seed=3, color="pink")), starts


def test_each_utterance_starts_speech_once_near_its_first_sound(utterances):
    audio, starts = utterances
    first = 5 * RATE
    found = onsets(VoiceActivityDetector(RATE), audio, first=first)
    assert len(found) == len(starts)
    for onset, start in zip(found, starts, strict=True):
        assert 0.0 <= (onset - first - start) / RATE <= 0.5


@pytest.mark.parametrize("kind", ["bed", "white", "pink"])
def test_silence_and_steady_noise_are_not_speech(kind):
    audio = {
        "bed": lambda: corpus.mix(corpus.noise(RATE * 30, 100.0, seed=4, color="pink")),  # a quiet room
        "white": lambda: corpus.mix(corpus.noise(RATE * 30, 1036.0, seed=5)),  # -30 dBFS: a fan close by
        "pink": lambda: corpus.mix(corpus.noise(RATE * 30, 1036.0, seed=6, color="pink")),
    }[kind]()
    vad = VoiceActivityDetector(RATE)
    assert onsets(vad, audio) == []
    assert not vad.speaking


def test_music_from_a_television_rarely_counts_as_speech():
    assert len(onsets(VoiceActivityDetector(RATE), corpus.tv_like(60.0))) <= 2  # measured: 1 in this minute


def test_speech_ends_after_the_hangover_and_reset_forgets_it(utterances):
    audio, starts = utterances
    frame = RATE // 100
    during = (starts[0] + RATE // 2) // frame * frame  # half a second into the first sentence
    pause = (starts[1] - RATE // 4) // frame * frame  # in the pause before the second
    vad = VoiceActivityDetector(RATE)
    onsets(vad, audio[:during])
    assert vad.speaking and vad.probability > vad.threshold
    onsets(vad, audio[during:pause], first=during)
    assert not vad.speaking
    vad.reset()
    assert not vad.speaking and vad.probability == 0.0
