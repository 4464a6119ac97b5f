"""The cues: built-in chimes by default (pitch, length, level, made at the pipeline rate), WAV overrides, and off."""

from __future__ import annotations

import logging
import wave

import numpy as np
import pytest

from device.audio.chimes import CHIMES, NOTE_S, PEAK, chime
from device.audio.earcons import NAMES, load_earcons
from device.config.schema import EarconsConfig


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.shape[0]), 8 * x.shape[0]))
    return float(np.fft.rfftfreq(8 * x.shape[0], 1 / rate)[spectrum.argmax()])


def test_every_cue_has_a_built_in_sound_and_is_on_by_default():
    assert set(NAMES) == set(CHIMES)
    sounds = load_earcons(EarconsConfig(), 48000)
    assert set(sounds) == set(NAMES)
    assert all(rate == 48000 for _, rate in sounds.values())


@pytest.mark.parametrize("name", sorted(CHIMES))
@pytest.mark.parametrize("rate", [16000, 48000])
def test_a_built_in_cue_plays_its_notes_briefly_and_softly(name, rate):
    x = chime(name, rate)
    assert x.dtype == np.int16
    assert x.shape[0] / rate < 0.25  # short: it must not talk over the user
    assert abs(int(np.abs(x.astype(np.int32)).max()) - PEAK * 32767) <= 1
    note = int(NOTE_S * rate)
    for k, freq in enumerate(CHIMES[name]):
        start = k * (note + int(0.02 * rate))
        assert abs(dominant_hz(x[start : start + note], rate) - freq) < 8, (name, k)
    assert np.array_equal(x, chime(name, rate))  # deterministic


def test_the_wake_cue_rises_and_the_conversation_end_falls():
    assert CHIMES["wake"][0] < CHIMES["wake"][-1]
    assert CHIMES["conversation_end"][0] > CHIMES["conversation_end"][-1]


def test_a_wav_overrides_a_cue_and_null_silences_it(tmp_path):
    path = tmp_path / "ding.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(np.full(2 * 2205, 1000, dtype="<i2").tobytes())
    sounds = load_earcons(EarconsConfig(wake=str(path), stopped=None), 48000)
    samples, rate = sounds["wake"]
    assert rate == 22050 and samples.shape[0] == 2205  # stereo mixed down
    assert "stopped" not in sounds
    assert sounds["listening"][1] == 48000  # the others keep their built-in sound


def test_a_missing_wav_disables_that_cue_with_one_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="device.audio.earcons"):
        sounds = load_earcons(EarconsConfig(error=str(tmp_path / "nope.wav")), 48000)
    assert "error" not in sounds and "wake" in sounds
    assert [r.getMessage() for r in caplog.records if "audio.earcons.error" in r.getMessage()]
