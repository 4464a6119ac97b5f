"""Where the wake phrase began, from the levels of the last seconds (synthetic bursts, 10 ms frames)."""

from __future__ import annotations

import numpy as np

from device.audio.wake.phrase_start import PhraseStart

FRAME = 160
RATE = 16000


def burst(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(int(seconds * RATE)) * (10 ** (dbfs / 20) * 32768)


def feed(parts: list[np.ndarray]) -> PhraseStart:
    audio = np.clip(np.concatenate(parts), -32768, 32767).astype(np.int16)
    assert audio.shape[0] % FRAME == 0
    ps = PhraseStart(FRAME)
    for i in range(0, audio.shape[0], FRAME):
        ps.add(audio[i : i + FRAME])
    return ps


def test_the_start_is_the_end_of_the_pause_before_the_phrase_not_the_pause_inside_it():
    # room, "okay" (0.4 s), 0.1 s between the words, "nabu" (0.4 s), 0.3 s until the model fires
    ps = feed([burst(2.0, -60), burst(0.4, -20, 1), burst(0.1, -60, 2), burst(0.4, -22, 3), burst(0.3, -60, 4)])
    assert ps.frames_back() == 120 + 5  # 1.2 s back to the first word, plus the 50 ms lead
    assert ps.extent() == (125, 30)  # and it ended where the 0.3 s of quiet began


def test_a_room_that_goes_from_digital_silence_to_its_noise_floor_is_not_taken_for_speech():
    ps = feed([np.zeros(2 * RATE), burst(0.6, -68), burst(0.8, -18, 1), burst(0.3, -68, 2)])
    assert ps.frames_back() == 110 + 5


def test_in_a_noisy_room_the_floor_sets_what_counts_as_quiet():
    ps = feed([burst(2.0, -42), burst(0.8, -20, 1), burst(0.3, -42, 2)])  # speech only 22 dB above the room
    assert ps.frames_back() == 110 + 5


def test_speech_running_into_the_phrase_puts_the_start_at_the_bound():
    ps = feed([burst(2.0, -60), burst(1.6, -25, 1), burst(0.8, -20, 2), burst(0.2, -60, 3)])
    assert ps.frames_back() == 200  # max_phrase_s: early rather than late
    assert ps.extent()[1] == 20


def test_no_history_means_no_way_back():
    assert PhraseStart(FRAME).extent() == (0, 0)
    ps = feed([burst(0.3, -20)])
    assert ps.frames_back() == 30  # everything there is
    ps.reset()
    assert ps.frames_back() == 0
