"""Benchmark of the follow-up window's voice activity detector: pymicro-vad against webrtcvad on the same audio.

    python -m benchmarks.vad [--json OUT]

Audio (tests/audio/corpus.py, espeak-ng): eight voices reading three sentences each, 1 s apart, at -20 dBFS over a
-50 dBFS pink bed; a minute each of that bed alone ("silence"), white and pink noise at -30 dBFS, and a TV-like
signal (music, no speech) at -20 dBFS; all brought to 16 kHz by the wake word's decimator and scored in 10 ms
frames. For each detector and setting:
- `recall`: speech frames (where the clean speech is above -50 dBFS) flagged as speech;
- `pause_flagged`: frames of the 1 s pauses, from 0.3 s after a sentence, flagged (a hangover excused);
- `<condition>_flagged`: frames of each non-speech minute flagged;
- `tv_onsets_per_min`: speech onsets the follow-up gate (100 ms of speech frames, 300 ms hangover) would report
  in the TV-like minute — each one would keep a session open;
- `onset_lag_s`: median time from a sentence's first sound to the gate's onset;
- `cpu_ms_per_audio_s`: `time.process_time()` over the scoring, per audio second (16 kHz in, least of 3 runs).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.audio import corpus

RATE = corpus.RATE
FRAME = 160  # 10 ms at 16 kHz
MIN_SPEECH, HANGOVER = 10, 30  # frames: device/audio/vad.py's defaults


def to16(x: np.ndarray) -> np.ndarray:
    from device.audio.downsample import Downsampler

    down = Downsampler(RATE, 1440)
    return np.concatenate([down.process(x[i : i + 1440]).copy() for i in range(0, x.shape[0], 1440)])


def scorers() -> dict[str, Callable[[], Callable[[np.ndarray], bool]]]:
    """name → a factory of a fresh per-frame speech test."""
    import webrtcvad
    from pymicro_vad import MicroVad

    def micro(threshold: float) -> Callable[[], Callable[[np.ndarray], bool]]:
        def make() -> Callable[[np.ndarray], bool]:
            vad = MicroVad()
            return lambda frame: vad.process_10ms(frame) > threshold
        return make

    def webrtc(mode: int) -> Callable[[], Callable[[np.ndarray], bool]]:
        def make() -> Callable[[np.ndarray], bool]:
            vad = webrtcvad.Vad(mode)
            return lambda frame: vad.is_speech(frame.tobytes(), 16000)
        return make

    return {"pymicro-vad 0.5": micro(0.5), "pymicro-vad 0.7": micro(0.7),
            **{f"webrtcvad mode {m}": webrtc(m) for m in range(4)}}


def flags(make: Callable[[], Callable[[np.ndarray], bool]], x: np.ndarray) -> tuple[np.ndarray, float]:
    test = make()
    n = x.shape[0] // FRAME
    out = np.zeros(n, dtype=bool)
    cpu0 = time.process_time()
    for k in range(n):
        out[k] = test(x[k * FRAME : (k + 1) * FRAME])
    return out, time.process_time() - cpu0


def gate_onsets(speechy: np.ndarray) -> list[int]:
    """Frames where the follow-up gate (MIN_SPEECH frames in a row, HANGOVER to end) reports an onset."""
    onsets, run, quiet, speaking = [], 0, 0, False
    for k, s in enumerate(speechy):
        if s:
            run, quiet = run + 1, 0
            if not speaking and run >= MIN_SPEECH:
                speaking = True
                onsets.append(k - run + 1)
        else:
            run = 0
            if speaking:
                quiet += 1
                speaking = quiet < HANGOVER
    return onsets


def material(speech: corpus.Speech) -> dict[str, Any]:
    sentences = corpus.prose(600)
    clean, starts, ends, at = [np.zeros(RATE)], [], [], RATE
    for k, voice in enumerate(corpus.OTHER_VOICES[:8]):
        said = speech.say(" ".join(sentences[3 * k : 3 * k + 3]), voice, 160).astype(np.float64)
        s, e = corpus.sounding(said.astype(np.int16))
        said = said[s:e] * (10 ** (-20 / 20) * 32767 * 2.5 / max(1.0, float(np.abs(said).max())))
        starts.append(at)
        ends.append(at + said.shape[0])
        clean += [said, np.zeros(RATE)]
        at += said.shape[0] + RATE
    body = np.concatenate(clean)
    clean16 = to16(corpus.mix(body)).astype(np.float64)
    n = clean16.shape[0] // FRAME
    level = 10 * np.log10(np.mean(clean16[: n * FRAME].reshape(n, FRAME) ** 2, axis=1) / 32768**2 + 1e-12)
    pause = np.zeros(n, dtype=bool)
    for e, s in zip(ends, [*starts[1:], at], strict=True):
        pause[(e * 16000 // RATE) // FRAME + 30 : (s * 16000 // RATE) // FRAME] = True
    return {
        "speech": to16(corpus.mix(body, corpus.noise(body.shape[0], 100.0, seed=3, color="pink"))),
        "truth": level > -50,
        "pause": pause,
        "starts": [(s * 16000 // RATE) // FRAME for s in starts],
        "silence": to16(corpus.mix(corpus.noise(RATE * 60, 100.0, seed=4, color="pink"))),
        "white": to16(corpus.mix(corpus.noise(RATE * 60, 1036.0, seed=5))),
        "pink": to16(corpus.mix(corpus.noise(RATE * 60, 1036.0, seed=6, color="pink"))),
        "tv": to16(corpus.tv_like(60.0)),
    }


def measure(m: dict[str, Any], make: Callable[[], Callable[[np.ndarray], bool]]) -> dict[str, Any]:
    speechy, _ = flags(make, m["speech"])
    truth = m["truth"][: speechy.shape[0]]
    onsets = gate_onsets(speechy)
    lags = [min((o - s for o in onsets if o >= s - 5), default=np.nan) / 100 for s in m["starts"]]
    out: dict[str, Any] = {
        "recall": float(speechy[truth].mean()),
        "pause_flagged": float(speechy[m["pause"][: speechy.shape[0]]].mean()),
        "onsets": len(onsets),
        "sentences": len(m["starts"]),
        "onset_lag_s": float(np.nanmedian(lags)),
    }
    for name in ("silence", "white", "pink", "tv"):
        got, _ = flags(make, m[name])
        out[f"{name}_flagged"] = float(got.mean())
        if name == "tv":
            out["tv_onsets_per_min"] = len(gate_onsets(got)) * 60 / (m[name].shape[0] / 16000)
    out["cpu_ms_per_audio_s"] = 1000 * min(flags(make, m["speech"])[1] for _ in range(3)) / (
        m["speech"].shape[0] / 16000)
    return out


def run(cache: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vd-bench-vad-") as tmp:
        m = material(corpus.Speech(cache or Path(tmp)))
    results = {name: measure(m, make) for name, make in scorers().items()}
    return {"vad": results, "load_average_1m": os.getloadavg()[0]}


COLUMNS = [("recall", "{:.2f}"), ("pause_flagged", "{:.2f}"), ("silence_flagged", "{:.3f}"),
           ("white_flagged", "{:.3f}"), ("pink_flagged", "{:.3f}"), ("tv_flagged", "{:.3f}"),
           ("tv_onsets_per_min", "{:.0f}"), ("onset_lag_s", "{:.2f}"), ("cpu_ms_per_audio_s", "{:.2f}")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.vad", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--cache", type=Path, help="keep the synthesised speech here (default: a temporary folder)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    result = run(args.cache)
    names = list(result["vad"])
    width = max(len(n) for n in names)
    print(f"| {'detector':<{width}} | " + " | ".join(c for c, _ in COLUMNS) + " |")
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * (len(c) + 2) for c, _ in COLUMNS) + "|")
    for name in names:
        r = result["vad"][name]
        print(f"| {name:<{width}} | " + " | ".join(f"{fmt.format(r[c]):>{len(c)}}" for c, fmt in COLUMNS) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
