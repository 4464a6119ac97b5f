"""`voice-device audio-test`: check the mic and speaker by ear and by eye, or measure the round trip.

Default: a live level meter while recording N seconds (processed audio, as the agent would hear it), then the
recording is played back. `--loopback`: a chirp is played and found again in the mic signal by
cross-correlation; the time from handing the chirp to the player to its arrival in the capture is the
round-trip latency (player → output buffer → speaker-to-mic path → input buffer → pump), measured with the
echo canceller, noise suppression and AGC off (they would remove or reshape the chirp).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import replace
from typing import TextIO

import numpy as np

from device.audio.engine import AudioEngine
from device.config.schema import AudioConfig

METER_WIDTH = 40
FLOOR_DB = -60.0


def meter_line(dbfs: float, width: int = METER_WIDTH) -> str:
    """`[#########...............]  -23.4 dBFS` for a level between -60 and 0 dBFS."""
    filled = round(width * (min(0.0, max(FLOOR_DB, dbfs)) - FLOOR_DB) / -FLOOR_DB)
    return f"[{'#' * filled}{'.' * (width - filled)}] {max(dbfs, -99.9):6.1f} dBFS"


def chirp(rate: int, seconds: float = 0.25, f0: float = 500.0, f1: float = 4000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)  # 10 ms ramps: no clicks
    return (0.5 * 32767 * np.sin(phase) * fade).astype(np.int16)


def find_delay(recorded: np.ndarray, probe: np.ndarray) -> tuple[int, float]:
    """Offset of `probe` in `recorded` and the peak's normalised correlation (0..1)."""
    r = recorded.astype(np.float64)
    p = probe.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(r.shape[0] + p.shape[0])))
    corr = np.fft.irfft(np.fft.rfft(r, n) * np.conj(np.fft.rfft(p, n)), n)[: r.shape[0]]
    lag = int(np.argmax(corr))
    window = r[lag : lag + p.shape[0]]
    norm = float(np.sqrt(np.dot(p, p) * np.dot(window, window))) or 1.0
    return lag, float(corr[lag] / norm)


async def _collect(
    engine: AudioEngine, start: int, samples: int, out: TextIO | None, arrivals: list[tuple[int, float]] | None = None
) -> np.ndarray:
    """`samples` of processed audio from index `start`; a meter on `out`; (chunk end index, arrival time)
    pairs appended to `arrivals`."""
    reader = engine.reader(start)
    chunks: list[np.ndarray] = []
    got = 0
    try:
        async with asyncio.timeout(samples / engine.sample_rate + 5):
            async for first, chunk in reader:
                if arrivals is not None:
                    arrivals.append((first + chunk.shape[0], time.monotonic()))
                chunks.append(chunk)
                got += chunk.shape[0]
                if out is not None:
                    out.write("\r" + meter_line(engine.speech_level_dbfs()))
                    out.flush()
                if got >= samples:
                    break
    finally:
        reader.close()
    return np.concatenate(chunks)[:samples] if chunks else np.zeros(0, dtype=np.int16)


async def _wait_played(engine: AudioEngine, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while engine.player.buffered_samples() > 0:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)  # the device's own buffer


async def record_and_play(config: AudioConfig, seconds: float, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    engine = AudioEngine(config)
    await engine.start()
    try:
        if not await _wait_mic(engine):
            return 1
        name = engine.input_device.name if engine.input_device else "?"
        out.write(f"recording {seconds:g} s from {name!r}: speak now\n")
        audio = await _collect(engine, engine.now_index(), int(seconds * engine.sample_rate), out)
        peak = int(np.abs(audio.astype(np.int32)).max()) if audio.shape[0] else 0
        seconds_got = audio.shape[0] / engine.sample_rate
        out.write(f"\nrecorded {seconds_got:.1f} s, peak {_dbfs(peak):.1f} dBFS; playing it back\n")
        engine.player.push_samples(audio, engine.sample_rate)
        engine.player.end()
        await _wait_played(engine, seconds + 5)
        _print_stats(engine, out)
        return 0
    finally:
        await engine.stop()


async def loopback(config: AudioConfig, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    # The echo canceller exists to remove exactly this chirp from the mic: measure the raw path.
    engine = AudioEngine(
        replace(config, echo_cancellation=False, noise_suppression=False, auto_gain_control=False)
    )
    await engine.start()
    try:
        if not await _wait_mic(engine):
            return 1
        # Measure the steady state (the speaker stream already running, as when the agent talks): play a
        # moment of silence first, which opens the output stream and fills its buffers.
        engine.player.push_samples(np.zeros(engine.sample_rate // 4, dtype=np.int16), engine.sample_rate)
        engine.player.end()
        await _wait_played(engine, 3)
        probe = chirp(engine.sample_rate)
        start = engine.now_index()
        arrivals: list[tuple[int, float]] = []
        pushed_at = time.monotonic()
        engine.player.push_samples(probe, engine.sample_rate)
        engine.player.end()
        recorded = await _collect(engine, start, int(1.0 * engine.sample_rate) + probe.shape[0], None, arrivals)
        lag, score = find_delay(recorded, probe)
        if score < 0.3:
            out.write(f"the chirp was not heard back (correlation {score:.2f}): is the speaker near the mic "
                      "and the volume up?\n")
            return 1
        out.write(f"round-trip latency {1000 * round_trip_s(start + lag, pushed_at, arrivals, engine.sample_rate):.1f}"
                  f" ms (correlation {score:.2f})\n")
        _print_stats(engine, out)
        return 0
    finally:
        await engine.stop()


def round_trip_s(onset: int, pushed_at: float, arrivals: list[tuple[int, float]], rate: int) -> float:
    """From handing the chirp to the player to its first sample reaching us: the arrival time of the chunk
    holding the onset, less the audio after the onset in that chunk (already captured when it arrived)."""
    for end, arrived in arrivals:
        if end > onset:
            return arrived - (end - onset) / rate - pushed_at
    raise ValueError("the onset is after the last chunk")


async def _wait_mic(engine: AudioEngine) -> bool:
    if engine.mic_open:
        return True
    print("voice-device: no microphone could be opened; see the error above and `voice-device devices`",
          file=sys.stderr)
    return False


def _print_stats(engine: AudioEngine, out: TextIO) -> None:
    s = engine.stats()
    out.write(f"overflows={s.input_overflows} underruns={s.underruns} lost_samples={s.lost_samples}\n")


def _dbfs(peak: int) -> float:
    return 20 * np.log10(peak / 32768) if peak > 0 else -100.0
