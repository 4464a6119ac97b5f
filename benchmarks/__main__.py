"""`python -m benchmarks --json OUT`: every benchmark, one table, one JSON file.

Runs the audio path benchmark (benchmarks/audio_path.py: capture latency and CPU against livekit's own
MediaDevices in the same run), the daemon benchmarks (benchmarks/daemon.py: press → agent listening against
the stub, pre-roll kept, idle and active CPU, RSS, start-up against a bare `import livekit.rtc`), the wake word
(benchmarks/wakeword.py: detection, false wakes, CPU against livekit-wakeword's listener) and the follow-up
window's VAD (benchmarks/vad.py: pymicro-vad against webrtcvad). The wake and VAD peers need the bench extra
(`pip install -e '.[bench]'`). The soak is separate (`python -m benchmarks.soak --sessions N`): it takes half
an hour at N = 500.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import audio_path, daemon, vad, wakeword

AUDIO_ROWS = [
    ("audio: capture → consumer p50 / p99", ("capture_to_consumer_ms_p50", "capture_to_consumer_ms_p99"),
     "{:.1f} / {:.1f} ms"),
    ("audio: PortAudio callback → consumer p50 / p99", ("callback_to_consumer_ms_p50", "callback_to_consumer_ms_p99"),
     "{:.2f} / {:.2f} ms"),
    ("audio: lost samples / input overflows", ("lost_samples", "input_overflows"), "{} / {}"),
    ("audio: CPU ratio ours / livekit MediaDevices", ("cpu_ratio",), "{:.2f}"),
]


def run_audio(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vd-bench-") as d:
        out = Path(d) / "audio.json"
        table = io.StringIO()
        with contextlib.redirect_stdout(table):  # its own table is folded into ours
            audio_path.main(["--seconds", str(seconds), "--json", str(out)])
        return json.loads(out.read_text())


def table(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [(label, fmt.format(*(result[k] for k in keys))) for label, keys, fmt in AUDIO_ROWS]
    rows += [(label, daemon.cell(result, key, fmt)) for label, key, fmt in daemon.ROWS]
    rows += wakeword.rows(result)
    if "vad" in result:
        chosen, peer = result["vad"]["pymicro-vad 0.7"], result["vad"]["webrtcvad mode 2"]
        rows.append(("VAD: pymicro-vad / webrtcvad (mode 2): speech recall, TV-music frames flagged, CPU",
                     f"{chosen['recall']:.2f} / {peer['recall']:.2f}, {chosen['tv_flagged']:.3f} / "
                     f"{peer['tv_flagged']:.3f}, {chosen['cpu_ms_per_audio_s']:.1f} / "
                     f"{peer['cpu_ms_per_audio_s']:.1f} ms per audio s"))
    rows.append(("load average (1 min) at the end", f"{result['load_average_1m']:.2f} on {os.cpu_count()} CPUs"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--json", help="write every figure here")
    p.add_argument("--audio-seconds", type=float, default=20.0, help="audio path run length (default 20)")
    daemon.add_arguments(p)
    p.add_argument("--wake-minutes", type=float, default=10.0, help="other speech for false wakes (default 10)")
    args = p.parse_args(argv)
    audio = run_audio(args.audio_seconds)
    print("audio path: done", file=sys.stderr, flush=True)
    result: dict[str, Any] = {**{f"audio_{k}" if k in ("seconds",) else k: v for k, v in audio.items()},
                              **daemon.run(args.seconds, args.sessions, args.repeats, args.turns, args.rounds)}
    result.update(wakeword.run(args.wake_minutes))
    print("wake word: done", file=sys.stderr, flush=True)
    try:
        result.update(vad.run())
    except ImportError as e:  # webrtcvad is in the bench extra
        print(f"vad: skipped ({e}; pip install -e '.[bench]')", file=sys.stderr)
    rows = table(result)
    width = max(len(k) for k, _ in rows)
    print(f"| {'benchmark':<{width}} | result |")
    print(f"|{'-' * (width + 2)}|--------|")
    for k, v in rows:
        print(f"| {k:<{width}} | {v} |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
