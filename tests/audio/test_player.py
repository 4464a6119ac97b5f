"""The player's jitter buffer, driven through its PortAudio callback by hand (no sound card)."""

from __future__ import annotations

import numpy as np
import pytest
from livekit import rtc

from device.audio.player import Player

RATE = 48000
BLOCK = RATE // 50


def pull(player: Player, blocks: int = 1) -> np.ndarray:
    out = [np.frombuffer(player.callback(None, BLOCK, {}, 0)[0], dtype=np.int16) for _ in range(blocks)]
    return np.concatenate(out)


def tone(freq: float, seconds: float, rate: int, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def frame(samples: np.ndarray, rate: int, channels: int = 1) -> rtc.AudioFrame:
    return rtc.AudioFrame(samples.tobytes(), rate, channels, samples.shape[0] // channels)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.shape[0])))
    return float(np.fft.rfftfreq(x.shape[0], 1 / rate)[spectrum.argmax()])


def test_playback_waits_for_the_jitter_target_then_plays_in_order():
    player = Player(RATE, jitter_ms=60, volume=1.0)
    ramp = np.arange(1, 4 * BLOCK + 1, dtype=np.int16)
    player.push(frame(ramp[: 2 * BLOCK], RATE))  # 40 ms < 60 ms target
    assert not pull(player).any()  # still buffering: silence
    player.push(frame(ramp[2 * BLOCK :], RATE))
    assert np.array_equal(pull(player, 4), ramp)
    assert player.underruns == 0


def test_a_short_sound_marked_as_ended_plays_at_once_and_is_not_an_underrun():
    player = Player(RATE, jitter_ms=200, volume=1.0)
    blip = np.full(BLOCK // 2, 1000, dtype=np.int16)
    player.push(frame(blip, RATE))
    player.end()
    out = pull(player, 2)
    assert np.array_equal(out[: BLOCK // 2], blip)
    assert not out[BLOCK // 2 :].any()
    assert player.underruns == 0


def test_running_dry_mid_stream_plays_silence_and_counts_an_underrun():
    player = Player(RATE, jitter_ms=20, volume=1.0)
    player.push(frame(np.full(BLOCK + BLOCK // 2, 500, dtype=np.int16), RATE))
    out = pull(player, 2)
    assert (out[: BLOCK + BLOCK // 2] == 500).all()
    assert not out[BLOCK + BLOCK // 2 :].any()
    assert player.underruns == 1
    assert player.underrun_samples == BLOCK // 2


def test_a_sound_that_never_reaches_the_target_still_plays_after_waiting_that_long():
    player = Player(RATE, jitter_ms=60, volume=1.0)
    player.push(frame(np.full(BLOCK // 4, 700, dtype=np.int16), RATE))
    out = pull(player, 5)
    assert (out == 700).sum() == BLOCK // 4


def test_flush_drops_everything_not_yet_played():
    player = Player(RATE, jitter_ms=20, volume=1.0)
    player.push(frame(np.full(10 * BLOCK, 900, dtype=np.int16), RATE))
    assert (pull(player) == 900).all()
    player.flush()
    assert player.buffered_samples() == 0
    assert not pull(player, 3).any()
    player.push(frame(np.full(2 * BLOCK, 300, dtype=np.int16), RATE))
    assert (pull(player, 2) == 300).all()  # and the next push plays normally


def test_volume_scales_what_is_pushed_after_it_changes():
    player = Player(RATE, jitter_ms=20, volume=0.5)
    player.push(frame(np.full(BLOCK, 1000, dtype=np.int16), RATE))
    player.volume = 2.0  # clamped to 1.0
    assert player.volume == 1.0
    player.push(frame(np.full(BLOCK, 1000, dtype=np.int16), RATE))
    out = pull(player, 2)
    assert (out[:BLOCK] == 500).all() and (out[BLOCK:] == 1000).all()


def test_a_volume_handed_to_a_mixer_is_not_scaled_here_and_every_change_goes_to_it():
    player = Player(RATE, jitter_ms=20, volume=0.5)
    applied: list[float] = []
    player.hand_volume_to(0.3, applied.append)
    assert player.volume == 0.3 and applied == []  # the mixer's own level, taken as it is
    player.push(frame(np.full(BLOCK, 1000, dtype=np.int16), RATE))
    assert (pull(player) == 1000).all()  # the mixer scales, not the player
    player.volume = 0.4
    player.volume = 1.5
    assert applied == [0.4, 1.0] and player.volume == 1.0


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_frames_at_any_rate_are_resampled_to_the_device_rate_at_the_right_pitch(rate: int):
    player = Player(RATE, jitter_ms=20, volume=1.0)
    player.push(frame(tone(1000, 0.5, rate), rate))
    player.end()
    out = pull(player, 25)
    assert abs(peak_hz(out[BLOCK * 2 : BLOCK * 22], RATE) - 1000) < 10
    sounding = np.nonzero(np.abs(out) > 100)[0]
    assert abs((sounding[-1] - sounding[0]) - RATE // 2) < RATE // 50  # the same duration, ±20 ms


def test_stereo_frames_are_mixed_to_mono():
    player = Player(RATE, jitter_ms=20, volume=1.0)
    stereo = np.column_stack([np.full(BLOCK, 1000), np.full(BLOCK, 3000)]).astype(np.int16).ravel()
    player.push(frame(stereo, RATE, channels=2))
    assert (pull(player) == 2000).all()


def test_every_block_handed_to_the_device_is_recorded_for_the_echo_canceller():
    player = Player(RATE, jitter_ms=20, volume=1.0)
    pull(player)  # idle: silence is played, and recorded
    player.push(frame(np.full(BLOCK, 1234, dtype=np.int16), RATE))
    pull(player)
    assert player.played.total == 2 * BLOCK
    rec = np.zeros(2 * BLOCK, dtype=np.int16)
    player.played.read(0, rec)
    assert not rec[:BLOCK].any() and (rec[BLOCK:] == 1234).all()


def test_a_fresh_stream_fills_the_device_buffer_with_silence_before_taking_audio():
    player = Player(RATE, jitter_ms=20, volume=1.0)
    player.attach(RATE, BLOCK)  # a stream was just opened
    player.push(frame(np.full(2 * BLOCK, 800, dtype=np.int16), RATE))
    assert not pull(player, 3).any()  # back-to-back start-up callbacks: silence, nothing consumed
    assert player.buffered_samples() == 2 * BLOCK
    player._last_cb -= 1.0  # the next callback comes a block later: PortAudio is pacing the stream
    assert (pull(player, 2) == 800).all()
    assert player.underruns == 0
