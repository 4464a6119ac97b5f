"""The demo's `--record DIR` on the real stack (tests/livekit/agent/export.py) on a recording made here."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np

from tests.livekit.agent.export import export_session


def _recording(folder: Path, rate: int = 48000) -> None:
    folder.mkdir()
    ramp = (np.arange(rate) % 30000).astype(np.int16)
    (folder / "stt-1.raw").write_bytes(ramp.tobytes())  # 1 s, the pre-connect part first
    (folder / "stt-2.raw").write_bytes(np.ones(rate // 2, dtype=np.int16).tobytes() + b"\0")  # a torn last sample
    events = [{"event": "job", "room": "r1", "agent_name": "demo-agent"},
              {"event": "device", "identity": "d", "mode": "push_to_talk", "protocol": "1.0"},
              {"event": "preconnect", "message": "pre-connect audio buffer pushed", "duration": 0.25},
              {"event": "stt_stream_closed", "stream": 1, "samples": rate, "sample_rate": rate},
              {"event": "stt_final", "text": "heard 1.0 seconds of speech", "voiced_s": 1.0}]
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_each_job_becomes_the_next_session_folder_with_what_the_agent_heard(tmp_path: Path):
    _recording(tmp_path / "room-a")
    first = export_session(tmp_path / "room-a", tmp_path / "out")
    second = export_session(tmp_path / "room-a", tmp_path / "out")
    assert (first.name, second.name) == ("session-1", "session-2")
    with wave.open(str(first / "heard.wav")) as w:
        heard = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        assert w.getframerate() == 48000
    assert len(heard) == 72000 and heard[:48000].tolist() == [i % 30000 for i in range(48000)]
    preconnect = np.frombuffer((first / "preconnect.raw").read_bytes(), dtype=np.int16)
    assert preconnect.tolist() == list(range(12000))  # the 0.25 s the pre-connect handler pushed
    meta = json.loads((first / "meta.json").read_text())
    assert meta["heard_s"] == 1.5 and meta["preconnect_s"] == 0.25 and meta["device"]["mode"] == "push_to_talk"
    assert meta["transcripts"] == ["heard 1.0 seconds of speech"]
