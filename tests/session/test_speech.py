"""The session's speech gates: the energy gate of the other modes, and the voice detector of the follow-up window
that counts only the user's speech after the wake phrase — not its tail, not noise."""

from __future__ import annotations

import numpy as np
import pytest

from device.session.text import user_went_away
from device.session.uplink.user_speech import VAD_RELEASE_S, EnergyGate, VadGate
from tests.audio import corpus
from tests.programs import need

RATE = 16000
CHUNK = RATE * 30 // 1000


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> corpus.Speech:
    need("espeak-ng", "sox")
    return corpus.Speech(tmp_path_factory.mktemp("speech-16k"), rate=RATE)


def heard_at(gate: VadGate | EnergyGate, audio: np.ndarray) -> list[int]:
    """Ring indices of the chunks the gate says hold speech."""
    return [i for i in range(0, len(audio) - CHUNK + 1, CHUNK) if gate.heard(i, audio[i:i + CHUNK])]


def test_the_voice_gate_counts_speech_after_the_wake_phrase_and_not_the_phrase_or_its_tail(speech) -> None:
    rng = np.random.default_rng(1)
    quiet = (rng.standard_normal(RATE) * 30).astype(np.int16)
    phrase = speech.say("okay nabu", "en-us", 150)
    answer = speech.say("what is the weather like tomorrow", "en-us", 150)
    audio = np.concatenate([quiet, phrase, quiet, quiet, answer, quiet])
    phrase_end = len(quiet) + len(phrase)
    answer_at = phrase_end + 2 * len(quiet)
    hits = heard_at(VadGate(RATE, 0.7, from_index=phrase_end), audio)
    assert hits, "the answer was not heard"
    assert min(hits) >= answer_at - CHUNK, "the wake phrase or its tail was taken for an answer"
    assert max(hits) <= answer_at + len(answer) + int(VAD_RELEASE_S * RATE)
    # the same gate from the start hears the phrase itself
    assert min(heard_at(VadGate(RATE, 0.7), audio)) < phrase_end


def test_a_command_said_in_the_same_breath_counts(speech) -> None:
    rng = np.random.default_rng(2)
    lead = (rng.standard_normal(RATE) * 30).astype(np.int16)
    said = speech.say("okay nabu what is the weather like in paris today", "en-us", 150)
    phrase_end = len(lead) + int(0.9 * RATE)  # about where the detector puts the end of "okay nabu" here
    assert heard_at(VadGate(RATE, 0.7, from_index=phrase_end), np.concatenate([lead, said, lead]))


def test_the_voice_gate_ignores_noise_that_keeps_the_energy_gate_open() -> None:
    noise = corpus.noise(5 * RATE, 1500.0, 3, "pink").astype(np.int16)  # about -27 dBFS: "speech" to the energy gate
    assert heard_at(EnergyGate(-45.0), noise)
    assert heard_at(VadGate(RATE, 0.7), noise) == []


def test_only_a_user_state_change_to_away_is_the_user_away() -> None:
    assert user_went_away('{"type": "user_state_changed", "old_state": "listening", "new_state": "away"}')
    for text in ('{"type": "user_state_changed", "old_state": "away", "new_state": "listening"}',
                 '{"type": "agent_state_changed", "new_state": "away"}', '["away"]', "", "{not json"):
        assert not user_went_away(text), text
