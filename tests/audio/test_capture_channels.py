"""A microphone opened with several channels (a 2-mic HAT on `hw:` is stereo only) reaches the mono pipeline as
one chosen channel or their average, in the callback, without allocating a sample buffer."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from device.audio.capture import Capture
from device.config import ConfigError, load_config_text

BLOCK = 480
TIME_INFO = {"current_time": 1.0, "input_buffer_adc_time": 0.99}


def interleaved(*channels: np.ndarray) -> bytes:
    return np.stack(channels, axis=1).astype("<i2").tobytes()


def captured(capture: Capture, blocks: int = 1) -> np.ndarray:
    return capture.ring._buf[: blocks * BLOCK].copy()


def stereo_block(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(-20000, 20000, BLOCK).astype(np.int16), rng.integers(-20000, 20000, BLOCK).astype(np.int16))


@pytest.mark.parametrize("channel", [0, 1])
def test_the_chosen_channel_of_a_stereo_block_is_kept(channel: int) -> None:
    left, right = stereo_block(1)
    capture = Capture(48000, BLOCK, 4, lambda: None, channels=2, channel=channel)
    capture.callback(interleaved(left, right), BLOCK, TIME_INFO, 0)
    assert np.array_equal(captured(capture), (left, right)[channel])
    assert capture.ring.total == BLOCK and capture.callbacks == 1


def test_without_a_choice_the_channels_are_averaged() -> None:
    left, right = stereo_block(2)
    capture = Capture(48000, BLOCK, 4, lambda: None, channels=2)
    capture.callback(interleaved(left, right), BLOCK, TIME_INFO, 0)
    expected = ((left.astype(np.int32) + right.astype(np.int32)) // 2).astype(np.int16)
    assert np.array_equal(captured(capture), expected)


def test_four_channels_of_a_mic_array_average_and_fill_consecutive_slots() -> None:
    rng = np.random.default_rng(3)
    blocks = [[rng.integers(-8000, 8000, BLOCK).astype(np.int16) for _ in range(4)] for _ in range(2)]
    capture = Capture(48000, BLOCK, 4, lambda: None, channels=4)
    for chans in blocks:
        capture.callback(interleaved(*chans), BLOCK, TIME_INFO, 0)
    expected = np.concatenate([(np.sum(np.stack(c).astype(np.int32), axis=0) // 4).astype(np.int16) for c in blocks])
    assert np.array_equal(captured(capture, 2), expected)


def test_the_callback_allocates_no_sample_buffer() -> None:
    left, right = stereo_block(4)
    data = interleaved(left, right)
    capture = Capture(48000, BLOCK, 8, lambda: None, channels=2)
    capture.callback(data, BLOCK, TIME_INFO, 0)  # warm up numpy's dispatch caches
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(50):
            capture.callback(data, BLOCK, TIME_INFO, 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # numpy reports its data buffers to tracemalloc: a mono block would be 960 bytes, the stereo one 1,920
    assert peak - base < BLOCK * 2, f"{peak - base} bytes at the peak"


BASE = "livekit:\n  token_source: local\n  url: ws://h:1\n  api_key: k\n  api_secret: s\n"


def test_a_channel_beyond_the_opened_ones_is_a_config_error() -> None:
    assert load_config_text(BASE + "audio:\n  input_channels: 2\n  input_channel: 1\n").audio.input_channel == 1
    with pytest.raises(ConfigError, match=r"<config>:8: audio.input_channel: channel 2 does not exist with "
                                          r"audio.input_channels: 2"):
        load_config_text(BASE + "audio:\n  input_channels: 2\n  input_channel: 2\n")
