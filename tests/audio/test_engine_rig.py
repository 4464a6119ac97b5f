"""The engine on real PortAudio → ALSA → PulseAudio: a null sink `spk` whose monitor is the mic `mic`."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from device.audio.engine import AudioEngine
from device.config.schema import AudioConfig, EarconsConfig
from device.core.vocabulary import Event, MicLost, MicRestored

pytestmark = pytest.mark.audio

# at the rig's own rate (48 kHz): what goes in comes out sample for sample, no resampler in between
PLAIN = AudioConfig(sample_rate=48000, echo_cancellation=False, noise_suppression=False, high_pass_filter=False,
                    auto_gain_control=False, volume=1.0, jitter_ms=20, reopen_backoff_max_s=0.5)


def tone(freq: float, seconds: float, rate: int, amp: float = 0.25) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.shape[0])))
    return float(np.fft.rfftfreq(x.shape[0], 1 / rate)[spectrum.argmax()])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


async def record(engine: AudioEngine, start: int, seconds: float) -> np.ndarray:
    """Everything from `start` for `seconds` of audio, asserting the chunks are contiguous."""
    reader = engine.reader(start)
    want = int(seconds * engine.sample_rate)
    chunks, pos = [], None
    try:
        async with asyncio.timeout(seconds + 3):
            async for first, chunk in reader:
                assert pos is None or first == pos
                pos = first + chunk.shape[0]
                chunks.append(chunk)
                if sum(c.shape[0] for c in chunks) >= want:
                    break
    finally:
        reader.close()
    assert reader.dropped == 0
    return np.concatenate(chunks)[:want]


@pytest.fixture
async def make_engine(audio_rig) -> AsyncIterator[Callable[..., AudioEngine]]:
    engines: list[AudioEngine] = []

    def make(config: AudioConfig = PLAIN, **kwargs) -> AudioEngine:
        engine = AudioEngine(config, **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.stop()


async def test_a_tone_played_to_the_speaker_comes_back_from_the_mic(make_engine):
    engine = make_engine()
    await engine.start()
    assert engine.mic_open
    start = engine.now_index()
    engine.player.push_samples(tone(440, 1.0, 48000), 48000)
    engine.player.end()
    x = await record(engine, start, 1.2)
    loud = x[np.abs(x) > 1000]
    assert loud.shape[0] > 0.5 * 48000, "the tone never came back"
    sounding = x[np.nonzero(np.abs(x) > 1000)[0][0] :][: 24000]
    assert abs(peak_hz(sounding, 48000) - 440) <= 10
    expected = 0.25 * 32767 / np.sqrt(2)
    assert expected / 2 < rms(sounding) < expected * 2
    assert engine.stats().lost_samples == 0


async def test_audio_captured_before_a_mark_is_delivered_after_it_in_order(make_engine):
    engine = make_engine()
    await engine.start()
    await asyncio.sleep(0.5)  # the ring fills with room noise (silence here)
    engine.player.push_samples(tone(880, 0.3, 48000), 48000)  # "the first word", spoken before the press
    engine.player.end()
    await asyncio.sleep(0.6)  # it is in the ring by now
    mark = engine.mark(1000)  # the press, keeping the last second
    assert engine.now_index() - mark == 48000
    x = await record(engine, mark, 1.3)  # history, then 300 ms live, one contiguous run
    sounding = np.nonzero(np.abs(x) > 1000)[0]
    assert sounding.shape[0] > 0.2 * 48000, "the audio from before the mark was not delivered"
    assert sounding[-1] < 48000  # all of it came from before the mark
    assert abs(peak_hz(x[sounding[0] : sounding[0] + 9600], 48000) - 880) <= 10


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
async def test_frames_played_at_each_rate_come_out_of_the_speaker_at_the_right_pitch(make_engine, audio_rig, rate):
    engine = make_engine()
    await engine.start()
    # An independent recorder on the speaker's monitor, not our own capture path.
    rec = subprocess.Popen(
        ["parec", "-d", "spk.monitor", "--rate=48000", "--channels=1", "--format=s16le", "--raw", "--latency-msec=20"],
        env=audio_rig.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        first = await asyncio.wait_for(asyncio.to_thread(rec.stdout.read, 960), 5)  # it is recording now
        from livekit import rtc

        samples = tone(1000, 0.8, rate)
        for i in range(0, samples.shape[0], rate // 100):  # as the agent's track delivers: 10 ms frames
            piece = samples[i : i + rate // 100]
            engine.player.push(rtc.AudioFrame(piece.tobytes(), rate, 1, piece.shape[0]))
        engine.player.end()
        out = first + await asyncio.wait_for(asyncio.to_thread(rec.stdout.read, int(1.4 * 48000) * 2), 6)
    finally:
        rec.kill()
        rec.wait(timeout=5)
    x = np.frombuffer(out[: len(out) // 2 * 2], dtype=np.int16)
    sounding = x[np.abs(x) > 1000]
    assert sounding.shape[0] > 0.6 * 48000, f"only {sounding.shape[0]} loud samples on the monitor"
    start = np.nonzero(np.abs(x) > 1000)[0][0]
    assert abs(peak_hz(x[start + 2400 : start + 2400 + 24000], 48000) - 1000) <= 10
    assert engine.player.underruns == 0


async def test_pipeline_at_16k_on_a_48k_device_is_resampled_to_the_right_pitch(make_engine):
    engine = make_engine(replace(PLAIN, sample_rate=16000), device_rate=48000)
    await engine.start()
    assert engine.stats().mic_open is True
    start = engine.now_index()
    engine.player.push_samples(tone(1000, 0.8, 16000), 16000)
    engine.player.end()
    x = await record(engine, start, 1.0)
    sounding = np.nonzero(np.abs(x) > 1000)[0]
    assert sounding.shape[0] > 0.5 * 16000
    assert abs(peak_hz(x[sounding[0] + 800 : sounding[0] + 8800], 16000) - 1000) <= 10


async def test_echo_cancellation_removes_most_of_the_speakers_sound_from_the_mic(make_engine):
    engine = make_engine(replace(PLAIN, echo_cancellation=True, high_pass_filter=True))
    await engine.start()
    rng = np.random.default_rng(3)
    noise = np.clip(rng.standard_normal(48000 * 3) * 4000, -32000, 32000).astype(np.int16)
    start = engine.now_index()
    engine.player.push_samples(noise, 48000)
    engine.player.end()
    x = await record(engine, start, 3.0)
    erle_db = 20 * np.log10(rms(noise) / max(rms(x[-48000:]), 1.0))  # after a couple of seconds to converge
    assert erle_db > 10, f"ERLE only {erle_db:.1f} dB"


async def test_a_lost_microphone_is_reported_reopened_and_capture_resumes(make_engine, audio_rig):
    events: list[Event] = []
    engine = make_engine(on_event=events.append)
    await engine.start()
    before = engine.now_index()
    modules = {line.split()[1]: line.split()[0] for line in audio_rig.pactl("list", "short", "modules").splitlines()}
    audio_rig.pactl("unload-module", modules["module-virtual-source"])
    audio_rig.pactl("unload-module", modules["module-null-sink"])
    try:
        async with asyncio.timeout(5):
            while not any(isinstance(e, MicLost) for e in events):
                await asyncio.sleep(0.05)
        assert not engine.mic_open
    finally:
        restore_rig(audio_rig)
    async with asyncio.timeout(8):
        while not any(isinstance(e, MicRestored) for e in events):
            await asyncio.sleep(0.05)
    assert engine.mic_open
    resumed = engine.now_index()
    x = await record(engine, resumed, 0.2)
    assert x.shape[0] == int(0.2 * 48000)
    assert resumed >= before  # indices continue across the reopen
    assert engine.stats().input_reopens >= 1


def restore_rig(audio_rig) -> None:
    """Reload what scripts/virtual-audio.sh loads, with the same arguments."""
    audio_rig.pactl("load-module", "module-null-sink", "sink_name=spk", "rate=48000", "channels=1", "norewinds=1",
                    "sink_properties=device.description=virtual-speaker")
    audio_rig.pactl("load-module", "module-virtual-source", "source_name=mic", "master=spk.monitor",
                    "source_properties=device.description=virtual-mic")
    audio_rig.pactl("set-default-sink", "spk")
    audio_rig.pactl("set-default-source", "mic")


async def test_no_matching_microphone_at_start_is_one_clear_line_and_a_retry(make_engine, caplog):
    events: list[Event] = []
    engine = make_engine(replace(PLAIN, input_device="no-such-mic"), on_event=events.append)
    with caplog.at_level(logging.ERROR, logger="device.audio"):
        await engine.start()  # does not raise
        await asyncio.sleep(0.8)  # a few retries
    assert not engine.mic_open
    assert [type(e) for e in events] == [MicLost]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors  # retries are quiet
    assert "no input device matches 'no-such-mic'" in errors[0] and "default" in errors[0]


async def test_a_configured_earcon_is_played_through_the_speaker(make_engine, tmp_path: Path):
    path = tmp_path / "listening.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(tone(660, 0.3, 16000).tobytes())
    engine = make_engine(replace(PLAIN, earcons=EarconsConfig(listening=str(path), error=None)))
    await engine.start()
    start = engine.now_index()
    engine.play_earcon("listening")
    engine.play_earcon("error")  # switched off: nothing happens
    x = await record(engine, start, 0.7)
    sounding = np.nonzero(np.abs(x) > 1000)[0]
    assert sounding.shape[0] > 0.2 * 48000
    assert abs(peak_hz(x[sounding[0] : sounding[0] + 9600], 48000) - 660) <= 10


async def test_the_built_in_wake_cue_is_played_by_default(make_engine):
    engine = make_engine()  # PLAIN leaves audio.earcons at its defaults: the sounds that ship with the device
    await engine.start()
    start = engine.now_index()
    engine.play_earcon("wake")
    x = await record(engine, start, 1.2)  # the output stream opens on demand: allow for it under load
    sounding = np.nonzero(np.abs(x) > 1000)[0]
    assert sounding.shape[0] > 0.1 * 48000
    assert abs(peak_hz(x[sounding[0] : sounding[0] + 3840], 48000) - 659.3) <= 15  # its first note, E5


async def test_the_speaker_stream_closes_when_idle_and_reopens_for_the_next_sound(make_engine):
    engine = make_engine()
    engine.output_idle_close_s = 0.3
    await engine.start()
    assert engine.player.stream is None  # nothing to play yet: no output stream, no CPU spent on it
    engine.player.push_samples(tone(500, 0.2, 48000), 48000)
    engine.player.end()
    assert engine.player.stream is not None
    async with asyncio.timeout(3):
        while engine.player.stream is not None:
            await asyncio.sleep(0.05)
    start = engine.now_index()
    engine.player.push_samples(tone(700, 0.4, 48000), 48000)
    engine.player.end()
    x = await record(engine, start, 0.7)
    sounding = np.nonzero(np.abs(x) > 1000)[0]
    assert sounding.shape[0] > 0.25 * 48000
    assert abs(peak_hz(x[sounding[0] : sounding[0] + 9600], 48000) - 700) <= 10
