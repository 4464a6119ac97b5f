"""Generated speech for the wake-word and VAD tests: synthesised once per session (tests/audio/corpus.py)."""

from __future__ import annotations

import pytest

from tests.audio import corpus
from tests.programs import need


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> corpus.Speech:
    """espeak-ng at 48 kHz, cached for the session."""
    need("espeak-ng", "sox")
    return corpus.Speech(tmp_path_factory.mktemp("speech-48k"))


@pytest.fixture(scope="session")
def speech_at(tmp_path_factory: pytest.TempPathFactory):
    """espeak-ng at another pipeline rate: speech_at(16000)."""
    need("espeak-ng", "sox")
    made: dict[int, corpus.Speech] = {}

    def at(rate: int) -> corpus.Speech:
        if rate not in made:
            made[rate] = corpus.Speech(tmp_path_factory.mktemp(f"speech-{rate}"), rate=rate)
        return made[rate]

    return at


@pytest.fixture(scope="session")
def other_speech(speech: corpus.Speech):
    """Ten and a half minutes of ordinary speech (ten voices, prose) at 48 kHz."""
    return corpus.other_speech(speech, 630.0)
