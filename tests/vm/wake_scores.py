"""The wake word's scores on a set of clips, the same way on this machine and inside a VM: run by the suite's
Python here and by the installed venv's Python in the guest, with the device's own detector (all built-in models).

    python wake_scores.py CLIPS.npz  →  one JSON line: {"machine": ..., "scores": {clip: {model: [p, ...]}},
                                                         "detections": {clip: [[model, p, index], ...]}}

A clip is 16 kHz mono int16. It is fed in 10 ms frames, as the daemon's pipeline feeds the listener; after each
frame the detector's peaks are taken, so a model's list holds its windowed probability at every frame (0.0 before
its first window). The detector is new for each clip.
"""

from __future__ import annotations

import json
import platform
import sys

import numpy as np

from device.audio.wake.detector import WakeWordDetector

RATE = 16000
FRAME = RATE // 100
MODELS = ["okay_nabu", "alexa", "hey_jarvis", "hey_mycroft"]


def scores(clip: np.ndarray) -> tuple[dict[str, list[float]], list[tuple[str, float, int]]]:
    detector = WakeWordDetector(MODELS, RATE)
    series: dict[str, list[float]] = {name: [] for name in detector.names}
    found = []
    try:
        for at in range(0, len(clip) - FRAME + 1, FRAME):
            hit = detector.feed(at, clip[at: at + FRAME])
            if hit is not None:
                found.append((hit.model, round(hit.probability, 6), hit.index))
            for name, peak in detector.take_peaks().items():
                series[name].append(peak)
    finally:
        detector.close()
    return series, found


def main() -> None:
    clips = np.load(sys.argv[1])
    out: dict[str, object] = {"machine": platform.machine(), "scores": {}, "detections": {}}
    for name in clips.files:
        series, found = scores(clips[name].astype(np.int16))
        out["scores"][name] = series  # type: ignore[index]
        out["detections"][name] = found  # type: ignore[index]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
