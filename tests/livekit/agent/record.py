"""What the test agent writes for the tests to read: one folder per job (room), an append-only `events.jsonl`
and one raw int16 file per STT stream (`stt-N.raw`, exactly the frames the agent's pipeline fed that stream).

Every line is flushed when written: the tests read these files while the worker runs, and after it is killed.
`Recorder(None)` keeps nothing (the plugins as the example agent uses them, agent/examples/basic_agent.py).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import IO, Any


class Recorder:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._events: IO[str] | None = None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            self._events = (folder / "events.jsonl").open("a", buffering=1)
        self._lock = threading.Lock()
        self._streams = 0

    def event(self, kind: str, **fields: Any) -> None:
        if self._events is None:
            return
        line = json.dumps({"event": kind, "t": round(time.time(), 4), **fields}, default=str)
        with self._lock:
            if not self._events.closed:
                self._events.write(line + "\n")

    def new_stream(self) -> tuple[int, Path]:
        with self._lock:
            self._streams += 1
            if self.folder is None:
                return self._streams, Path(os.devnull)
            return self._streams, self.folder / f"stt-{self._streams}.raw"

    def close(self) -> None:
        with self._lock:
            if self._events is not None:
                self._events.close()
