"""Benchmark of the capture path: latency from the ADC to a consumer, lost samples, and CPU against livekit's
own `rtc.MediaDevices().open_input()` on the same virtual mic, in the same run.

    python -m benchmarks.audio_path --seconds 20 --json OUT [--block-ms 20|30|40]

Each side runs in its own child process (so neither pays for the other's threads), one after the other:
- ours: AudioEngine with echo cancellation, noise suppression, high-pass and AGC on (like the peer); a consumer
  reads chunks and hands each to an `rtc.AudioSource` with one `capture_frame`, as the session does.
  `capture_to_consumer_ms`: for every 10 ms frame, the time its chunk reaches the consumer minus PortAudio's
  input ADC time of the frame's first sample (`inputBufferAdcTime` of its block + its offset in the block).
  `callback_to_consumer_ms`: the time a chunk reaches the consumer minus the time the PortAudio callback that
  completed it ran — the part our code adds, whatever PortAudio's clock says.
  `frame_complete_to_consumer_ms`: for every 10 ms frame, callback → consumer plus how long before that
  callback the frame's last sample must already have been captured (its distance from the block's end): a
  physical lower bound of "the frame exists → a consumer has it", which grows with the block size.
- peer: `rtc.MediaDevices().open_input(enable_aec=True, noise_suppression=True, high_pass_filter=True,
  auto_gain_control=True)` (sounddevice + APM + AudioSource), needs `sounddevice` (benchmark-only dependency).
CPU is `time.process_time()` (all threads of the child) over the measured window, divided by audio seconds.
Runs its own virtual PulseAudio rig (scripts/virtual-audio.sh) when PULSE_SERVER is not set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WARMUP_S = 1.5


# ---- the children ---------------------------------------------------------------------------------------------


async def measure_ours(seconds: float, block_ms: int) -> dict:
    import numpy as np
    from livekit import rtc

    from device.audio.engine import AudioEngine
    from device.config.schema import AudioConfig

    config = AudioConfig(block_ms=block_ms, echo_cancellation=True, noise_suppression=True, high_pass_filter=True,
                         auto_gain_control=True)
    engine = AudioEngine(config)
    await engine.start()
    if not engine.mic_open:
        raise SystemExit("no microphone: is the virtual rig running?")
    source = rtc.AudioSource(engine.sample_rate, 1)
    await asyncio.sleep(WARMUP_S)
    reader = engine.reader(engine.now_index())
    frame_ms: list[float] = []
    callback_ms: list[float] = []
    complete_ms: list[float] = []
    frame = engine.sample_rate // 100
    samples = 0
    cpu0, t0 = time.process_time(), time.monotonic()
    async for first, chunk in reader:
        now = time.monotonic()
        n = chunk.shape[0]
        frame_ms.extend(1000 * (now - engine.capture_time(i)) for i in range(first, first + n, frame))
        since_callback = now - engine.last_capture_monotonic
        callback_ms.append(1000 * since_callback)
        end = first + n
        complete_ms.extend(1000 * (since_callback + (end - (i + frame)) / engine.sample_rate)
                           for i in range(first, end, frame))
        await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), engine.sample_rate, 1, n))
        samples += n
        if now - t0 >= seconds:
            break
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - t0
    stats = engine.stats()
    reader.close()
    await source.aclose()
    await engine.stop()
    audio_s = samples / engine.sample_rate
    return {
        "capture_to_consumer_ms_p50": float(np.percentile(frame_ms, 50)),
        "capture_to_consumer_ms_p99": float(np.percentile(frame_ms, 99)),
        "capture_to_consumer_ms_max": float(np.max(frame_ms)),
        "callback_to_consumer_ms_p50": float(np.percentile(callback_ms, 50)),
        "callback_to_consumer_ms_p99": float(np.percentile(callback_ms, 99)),
        "frame_complete_to_consumer_ms_p50": float(np.percentile(complete_ms, 50)),
        "frame_complete_to_consumer_ms_p99": float(np.percentile(complete_ms, 99)),
        "chunks": len(callback_ms),
        "samples_per_chunk_mean": samples / max(1, len(callback_ms)),
        "lost_samples": stats.lost_samples + reader.dropped,
        "input_overflows": stats.input_overflows,
        "cpu_s": cpu,
        "audio_s": audio_s,
        "wall_s": wall,
        "cpu_s_per_audio_s": cpu / audio_s,
    }


async def measure_peer(seconds: float) -> dict:
    import sounddevice as sd
    from livekit import rtc

    devices = sd.query_devices()
    index = next((i for i, d in enumerate(devices) if d["name"] == "default" and d["max_input_channels"] > 0), None)
    md = rtc.MediaDevices()
    capture = md.open_input(enable_aec=True, noise_suppression=True, high_pass_filter=True, auto_gain_control=True,
                            input_device=index)
    await asyncio.sleep(WARMUP_S)
    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - t0
    await capture.aclose()
    return {"cpu_s": cpu, "audio_s": wall, "cpu_s_per_audio_s": cpu / wall}


# ---- the parent ------------------------------------------------------------------------------------------------


def run_child(role: str, seconds: float, block_ms: int, env: dict[str, str]) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.audio_path", "--role", role, "--seconds", str(seconds),
           "--block-ms", str(block_ms)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0:
        raise SystemExit(f"audio_path: the {role} run failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def start_rig(env: dict[str, str]) -> tuple[dict[str, str], str | None]:
    if env.get("PULSE_SERVER"):
        return env, None
    d = tempfile.mkdtemp(prefix="vd-bench-audio-")
    rig_env = {**env, "VOICE_DEVICE_AUDIO_DIR": d}
    subprocess.run(["bash", str(ROOT / "scripts" / "virtual-audio.sh"), "start"], env=rig_env, check=True,
                   capture_output=True)
    return {**env, "PULSE_SERVER": f"unix:{d}/native"}, d


def stop_rig(env: dict[str, str], d: str | None) -> None:
    if d is None:
        return
    subprocess.run(["bash", str(ROOT / "scripts" / "virtual-audio.sh"), "stop"],
                   env={**env, "VOICE_DEVICE_AUDIO_DIR": d}, capture_output=True)
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.audio_path", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--json", help="write the results here")
    from device.config.schema import AudioConfig

    p.add_argument("--block-ms", type=int, default=AudioConfig().block_ms, choices=(10, 20, 30, 40),
                   help="PortAudio block (default: the config default)")
    p.add_argument("--role", choices=("ours", "peer"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.role == "ours":
        print(json.dumps(asyncio.run(measure_ours(args.seconds, args.block_ms))))
        return 0
    if args.role == "peer":
        print(json.dumps(asyncio.run(measure_peer(args.seconds))))
        return 0

    env, rig_dir = start_rig(dict(os.environ))
    try:
        ours = run_child("ours", args.seconds, args.block_ms, env)
        peer = run_child("peer", args.seconds, args.block_ms, env)
    finally:
        stop_rig(env, rig_dir)
    result = {
        "block_ms": args.block_ms,
        "seconds": args.seconds,
        **{k: ours[k] for k in ours if k not in ("cpu_s", "audio_s", "wall_s")},
        "cpu_s_per_audio_s_peer": peer["cpu_s_per_audio_s"],
        "cpu_ratio": ours["cpu_s_per_audio_s"] / peer["cpu_s_per_audio_s"],
        "load_average_1m": os.getloadavg()[0],
    }
    rows = [
        ("block size", f"{args.block_ms} ms"),
        ("capture (PortAudio ADC time) → consumer p50", f"{result['capture_to_consumer_ms_p50']:.1f} ms"),
        ("capture (PortAudio ADC time) → consumer p99", f"{result['capture_to_consumer_ms_p99']:.1f} ms"),
        ("capture (PortAudio ADC time) → consumer max", f"{result['capture_to_consumer_ms_max']:.1f} ms"),
        ("PortAudio callback → consumer p50", f"{result['callback_to_consumer_ms_p50']:.2f} ms"),
        ("PortAudio callback → consumer p99", f"{result['callback_to_consumer_ms_p99']:.2f} ms"),
        ("frame complete → consumer p50 (lower bound)", f"{result['frame_complete_to_consumer_ms_p50']:.1f} ms"),
        ("frame complete → consumer p99 (lower bound)", f"{result['frame_complete_to_consumer_ms_p99']:.1f} ms"),
        ("lost samples", f"{result['lost_samples']}"),
        ("input overflows", f"{result['input_overflows']}"),
        ("CPU s per audio s, ours", f"{result['cpu_s_per_audio_s']:.4f}"),
        ("CPU s per audio s, peer (MediaDevices)", f"{result['cpu_s_per_audio_s_peer']:.4f}"),
        ("CPU ratio ours / peer", f"{result['cpu_ratio']:.2f}"),
        ("load average (1 min)", f"{result['load_average_1m']:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
