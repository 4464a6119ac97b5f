"""The demo's `--record DIR` on the real stack: a finished job's recording written the way the stub SFU writes
its own (tests/stubsfu), `DIR/session-N/`:

- `heard.wav`: what the agent heard — every frame its pipeline fed the STT, the turns one after the other
  (pre-connect audio first), mono int16 at the agent's input rate;
- `preconnect.raw`: the part of it that came as pre-connect audio (what the session's handler pushed), raw int16;
- `meta.json`: the room, the rate, the seconds of each, the device the companion saw, the STT's transcripts.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any


def _events(folder: Path) -> list[dict[str, Any]]:
    path = folder / "events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def next_session_dir(export: Path) -> Path:
    n = 1
    while (export / f"session-{n}").exists():
        n += 1
    folder = export / f"session-{n}"
    folder.mkdir(parents=True)
    return folder


def export_session(recording: Path, export: Path) -> Path:
    events = _events(recording)
    closed = [e for e in events if e["event"] == "stt_stream_closed" and e.get("sample_rate")]
    rate = int(closed[0]["sample_rate"]) if closed else 48000
    streams = sorted(recording.glob("stt-*.raw"), key=lambda p: int(p.stem.split("-")[1]))
    pcm = [p.read_bytes() for p in streams]
    heard = b"".join(chunk[: len(chunk) - len(chunk) % 2] for chunk in pcm)
    pushed = [e for e in events if e["event"] == "preconnect" and str(e.get("message", "")).endswith("buffer pushed")]
    preconnect_s = float(pushed[0].get("duration", 0.0)) if pushed else 0.0
    preconnect = pcm[0][: round(preconnect_s * rate) * 2] if pcm else b""
    out = next_session_dir(export)
    with wave.open(str(out / "heard.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(heard)
    (out / "preconnect.raw").write_bytes(preconnect)
    job = next((e for e in events if e["event"] == "job"), {})
    device = next((e for e in events if e["event"] == "device"), {})
    meta = {"room": job.get("room"), "agent_name": job.get("agent_name"), "sample_rate": rate,
            "heard_s": round(len(heard) / 2 / rate, 3), "preconnect_s": round(len(preconnect) / 2 / rate, 3),
            "stt_streams": len(streams), "device": {k: device.get(k) for k in ("identity", "mode", "protocol")},
            "transcripts": [e["text"] for e in events if e["event"] == "stt_final" and e.get("voiced_s")],
            "recording": str(recording)}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out
