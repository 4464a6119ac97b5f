"""`voice-device wake-test`: live wake-word scores from the real microphone, to choose models and cutoffs.

Runs the same path as the daemon (engine → echo canceller → listener → detector) and prints, every
`--interval` seconds, each model's highest windowed probability in that interval (a `*` marks one above its
cutoff), and a line for each detection with where the phrase began. The summary gives each model's highest
score: a cutoff a little below what the wake word scores, and well above what the room scores, is the one to
put in `wake_word.cutoffs`. The wake cue plays on each detection, as it will on the device.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from device.audio.engine import AudioEngine
from device.audio.wake.detector import Detection, WakeWordDetector
from device.audio.wake.listener import WakeWordListener
from device.config.schema import AudioConfig, WakeWordConfig


def score_line(seconds: float, peaks: dict[str, float], cutoffs: dict[str, float]) -> str:
    """`   3.0 s  okay_nabu 0.962*  alexa 0.004` (a * marks a score above the model's cutoff)."""
    cells = [f"{name} {peak:.3f}{'*' if peak > cutoffs[name] else ' '}" for name, peak in peaks.items()]
    return f"{seconds:6.1f} s  " + "  ".join(cells)


class _Tally:
    def __init__(self, names: list[str]) -> None:
        self.highest = dict.fromkeys(names, 0.0)
        self.detections = dict.fromkeys(names, 0)

    def add(self, peaks: dict[str, float]) -> None:
        for name, peak in peaks.items():
            self.highest[name] = max(self.highest[name], peak)

    def summary(self, cutoffs: dict[str, float]) -> str:
        return "summary: " + "; ".join(
            f"{name}: {self.detections[name]} detection(s), highest {self.highest[name]:.3f} (cutoff {cutoffs[name]:g})"
            for name in self.highest)


async def wake_test(audio: AudioConfig, wake: WakeWordConfig, seconds: float, interval: float = 1.0,
                    out: TextIO | None = None) -> int:
    out = out or sys.stdout
    detector = WakeWordDetector.from_config(wake, audio.sample_rate)
    engine = AudioEngine(audio)
    await engine.start()
    tally = _Tally(detector.names)
    try:
        if not engine.mic_open:
            print("voice-device: no microphone could be opened; see the error above and `voice-device devices`",
                  file=sys.stderr)
            return 1
        rate = engine.sample_rate
        origin = engine.now_index()
        cutoffs = detector.cutoffs

        def heard(d: Detection) -> None:
            tally.detections[d.model] += 1
            out.write(f"detected {d.model} (probability {d.probability:.3f}) at {(d.index - origin) / rate:.2f} s; "
                      f"the phrase began at {(d.start_index - origin) / rate:.2f} s\n")
            out.flush()
            engine.play_earcon("wake")

        listener = WakeWordListener(engine, detector, heard)
        listener.start()
        listed = ", ".join(f"{n} (cutoff {c:g})" for n, c in cutoffs.items())
        name = engine.input_device.name if engine.input_device else "?"
        out.write(f"listening for {listed} on {name!r} for {seconds:g} s: say the wake word\n")
        out.flush()
        await _report(engine, detector, tally, origin, seconds, interval, out)
        await listener.stop()
        out.write(tally.summary(cutoffs) + "\n")
        return 0
    finally:
        detector.close()
        await engine.stop()


async def _report(engine: AudioEngine, detector: WakeWordDetector, tally: _Tally, origin: int, seconds: float,
                  interval: float, out: TextIO) -> None:
    """A score line every `interval` of captured audio (by ring index, so a slow terminal loses nothing)."""
    rate = engine.sample_rate
    step = max(1, int(interval * rate))
    next_at = origin + step
    end = origin + int(seconds * rate)
    async with asyncio.timeout(seconds + 10):
        while next_at <= end:
            await asyncio.sleep(0.05)
            if engine.now_index() < next_at:
                continue
            peaks = detector.take_peaks()
            tally.add(peaks)
            out.write(score_line((next_at - origin) / rate, peaks, detector.cutoffs) + "\n")
            out.flush()
            next_at += step

