"""The session layer's two boundaries: what it needs from the audio engine (`AudioPort`) and what it offers the
daemon (`SessionPort`; the in-process `Supervisor` and the session-process `RemoteSupervisor` both implement it, so
the daemon does not know which one it has).

A session needs only `AudioPort`: the mic from a ring index on, the speaker, the rate. The daemon's engine
(`device/audio/engine.py`) is a `DaemonAudio`, which adds what only the owner of the ring has: where a press's
pre-roll begins (`mark`), the ring's memfd for a session process (`ring_fd`), and readers that can just `advance`
without copying the samples. A session process's port (`process/child_audio.py`) is an `AudioPort` only; tests use
a fake that is both.

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

    from device.session.status import SessionStatus

Chunk = tuple[int, np.ndarray]  # (index of the first sample in the ring, int16 mono samples)


class AudioReader(Protocol):
    """Async iterator of `Chunk`s from a start index; `close()` releases it."""

    def __aiter__(self) -> AsyncIterator[Chunk]: ...

    def head(self) -> int:
        """The ring index just past the newest audio this reader can have now (read or not yet read): where an
        unmute takes effect."""
        ...

    def close(self) -> None: ...


class RingReader(AudioReader, Protocol):
    """A reader of the daemon's own ring."""

    async def advance(self) -> int:
        """Instead of iterating: wait for more audio and return the index it now ends at (a session process reads
        the samples from the shared ring itself); StopAsyncIteration at the end."""
        ...


class Player(Protocol):
    volume: float  # 0.0 .. 1.0, settable

    def push(self, frame: rtc.AudioFrame) -> None: ...

    def end(self) -> None:
        """Nothing more follows for now: play out what is buffered (the agent stopped speaking)."""
        ...

    def flush(self) -> None: ...


class AudioPort(Protocol):
    """What a session needs of the audio: the mic from a ring index on, the speaker, the sample rate."""

    sample_rate: int

    @property
    def player(self) -> Player: ...

    def reader(self, start_index: int) -> AudioReader: ...


class DaemonAudio(AudioPort, Protocol):
    """The daemon's audio engine: the session's port plus what only the owner of the ring has."""

    def mark(self, preroll_ms: int) -> int:
        """The ring index `preroll_ms` before now (a press or a session start)."""
        ...

    def reader(self, start_index: int) -> RingReader: ...

    @property
    def ring_fd(self) -> int:
        """A memfd holding the ring (`device.audio.shared` layout) that a session process maps to read it."""
        ...


class SessionPort(Protocol):
    """A session supervisor as the daemon drives it. `session` is the device machine's number for the session a
    start begins; every event the session emits carries it, so a late report of an earlier one is recognised."""

    async def start(self, mark: int, *, session: int = 0, listen_from: int | None = None) -> None:
        """Start a session whose audio begins at ring index `mark` (the pre-roll already included); the user's
        speech counts from `listen_from` (after a wake phrase; default the mark)."""
        ...

    async def end(self, reason: str = "requested") -> None: ...

    async def start_turn(self, mark: int, *, session: int = 0) -> None:
        """Push-to-talk: start a session if none runs (its audio from ring index `mark`, taken by the caller at the
        press), then the user's turn (barge-in while the agent speaks)."""
        ...

    async def end_turn(self) -> None: ...

    async def cancel_turn(self) -> None: ...

    async def interrupt(self) -> None:
        """Barge-in without turns: the agent's audio is dropped until it stops speaking (the daemon has already
        flushed its player)."""
        ...

    async def set_muted(self, muted: bool) -> None: ...

    async def send_text(self, text: str) -> None:
        """Typed text to the agent (`lk.chat`); SessionError when no session is connected."""
        ...

    def status(self) -> SessionStatus: ...

    async def refresh(self) -> None:
        """Bring `status()` up to date (a session process pushes it; this asks for an exact one)."""
        ...

    async def wait_quiet(self) -> None:
        """Return once everything posted so far has been handled."""
        ...

    async def aclose(self) -> None: ...
