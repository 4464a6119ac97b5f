"""What the session needs from the audio engine (`device/audio/engine.py` provides it; tests use a fake).

The session reads the microphone from a ring index onward (history first, then live, contiguous chunks whose
lengths are multiples of 10 ms) and pushes the agent's audio to a player. Nothing here imports livekit at
run time: frames pushed to the player are `rtc.AudioFrame`s made by the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from livekit import rtc

Chunk = tuple[int, np.ndarray]  # (index of the first sample in the ring, int16 mono samples)


class AudioReader(Protocol):
    """Async iterator of `Chunk`s from a start index; `close()` releases it."""

    def __aiter__(self) -> AsyncIterator[Chunk]: ...

    def close(self) -> None: ...


class Player(Protocol):
    volume: float  # 0.0 .. 1.0, settable

    def push(self, frame: rtc.AudioFrame) -> None: ...

    def flush(self) -> None: ...


class AudioPort(Protocol):
    sample_rate: int
    player: Player

    def mark(self, preroll_ms: int) -> int:
        """The ring index `preroll_ms` before now (a press or a session start)."""
        ...

    def reader(self, start_index: int) -> AudioReader: ...
