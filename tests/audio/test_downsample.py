"""Pipeline audio to 16 kHz for the models: the decimator's response, its alignment with ring indices, and that it
works in place (one preallocated buffer, any chunking)."""

from __future__ import annotations

import numpy as np
import pytest

from device.audio.downsample import Downsampler, Frames16k


def sine(freq: float, rate: int, seconds: float = 1.0, amp: float = 10000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def through(down: Downsampler, x: np.ndarray, block: int) -> np.ndarray:
    return np.concatenate([down.process(x[i : i + block]).copy() for i in range(0, x.shape[0], block)])


def gain_db(down: Downsampler, freq: float) -> float:
    x = sine(freq, down.rate)
    y = through(down, x, down.rate * 30 // 1000)[4000:].astype(np.float64)  # past the filter's start
    return 20 * np.log10(max(1e-9, np.sqrt(np.mean(y * y)) / (10000 / np.sqrt(2))))


def test_48k_keeps_the_speech_band_and_removes_what_would_alias():
    down = Downsampler(48000, 1440)
    for freq in (200.0, 1000.0, 3000.0, 6000.0):
        assert gain_db(down, freq) > -0.5, freq
    for freq in (10000.0, 12000.0, 16000.0, 21000.0):
        assert gain_db(down, freq) < -60, freq


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_a_click_maps_back_to_its_ring_index(rate):
    frames = Frames16k(rate)
    x = np.zeros(rate, dtype=np.int16)
    t = np.arange(rate)
    click = rate // 2 + 7
    x[:] = (20000 * np.exp(-(((t - click) / (rate * 0.0005)) ** 2))).astype(np.int16)
    first = 123 * (rate // 100)  # the ring does not start at zero
    positions, values = [], []
    step = rate * 30 // 1000
    for i in range(0, rate, step):
        for frame in frames.frames(first + i, x[i : i + step]):
            positions.append(frames.position - 160)
            values.append(frame.copy())
    out = np.concatenate(values)
    peak = positions[0] + int(np.argmax(out))
    assert abs(frames.ring_index(peak) - (first + click)) <= rate // 16000 + 1


def test_the_decimated_audio_is_the_same_whatever_the_chunking():
    x = (np.random.default_rng(1).standard_normal(48000) * 3000).astype(np.int16)
    assert np.array_equal(through(Downsampler(48000, 9600), x, 480), through(Downsampler(48000, 9600), x, 9600))


def test_following_the_mic_reuses_one_buffer():
    down = Downsampler(48000, 1440)
    x = sine(1000, 48000, 0.1)
    a = down.process(x[:1440])
    b = down.process(x[1440:2880])
    assert np.shares_memory(a, b)
    same = Downsampler(16000, 480)
    block = sine(1000, 16000, 0.03)
    assert same.process(block) is block


def test_a_block_longer_than_promised_is_refused():
    with pytest.raises(ValueError, match="longer than"):
        Downsampler(48000, 1440).process(np.zeros(2880, dtype=np.int16))


def test_a_jump_in_ring_indices_re_anchors_the_mapping():
    frames = Frames16k(48000)
    list(frames.frames(0, np.zeros(4800, dtype=np.int16)))
    list(frames.frames(96000, np.zeros(4800, dtype=np.int16)))  # 1.9 s never delivered
    assert frames.gaps == 1
    assert frames.ring_index(frames.position) == 96000 + 4800 - round(frames._down.delay)
    assert frames.ring_index(0) == 96000  # nothing maps to before the jump
