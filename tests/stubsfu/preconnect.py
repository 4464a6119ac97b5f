"""The agent's side of the pre-connect audio buffer, with the rules of livekit-agents' PreConnectAudioHandler.

- A stream on topic `lk.agent.pre-connect-audio-buffer` without `trackId` is ignored.
- Missing `sampleRate` / `channels` is an error: the buffer is not used.
- The agent asks for the buffer of a track when it subscribes to it, and waits at most 3 s.
- The stream must be complete within 3 s of opening.
- A buffer already complete whose stream opened more than 1.0 s before the agent asks is dropped as too old.
- A buffer for another track id is never used.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from .datastreams import IncomingStream

TOPIC = "lk.agent.pre-connect-audio-buffer"
WAIT_TIMEOUT_S = 3.0
STREAM_DEADLINE_S = 3.0
MAX_AGE_S = 1.0


@dataclass
class Outcome:
    """What became of the buffer for one track: status is `used` or why it was not."""

    status: str  # used | timeout | too_slow | too_old | missing_attributes | opus_not_supported
    stream: IncomingStream | None = None
    sample_rate: int = 0
    channels: int = 0


class PreConnectBuffers:
    """Collects pre-connect streams by trackId and hands one out when the agent subscribes to that track."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, wait_timeout_s: float = WAIT_TIMEOUT_S,
                 stream_deadline_s: float = STREAM_DEADLINE_S, max_age_s: float = MAX_AGE_S) -> None:
        self._clock = clock
        self.wait_timeout_s = wait_timeout_s
        self.stream_deadline_s = stream_deadline_s
        self.max_age_s = max_age_s
        self._streams: dict[str, IncomingStream] = {}
        self._changed = asyncio.Event()
        self.ignored: list[IncomingStream] = []  # streams without trackId

    def on_open(self, stream: IncomingStream) -> None:
        track_id = stream.attributes.get("trackId", "")
        if not track_id:
            self.ignored.append(stream)
            return
        self._streams[track_id] = stream  # a newer stream for the same track replaces the old one
        self._wake()

    def on_close(self, stream: IncomingStream) -> None:
        self._wake()

    def received_track_ids(self) -> list[str]:
        return list(self._streams)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, track_id: str) -> Outcome:
        asked = self._clock()
        existing = self._streams.get(track_id)
        if existing is not None and existing.closed is not None and asked - existing.opened > self.max_age_s:
            return Outcome("too_old", existing)
        while True:
            stream = self._streams.get(track_id)
            deadline = asked + self.wait_timeout_s
            if stream is not None:
                deadline = min(deadline, stream.opened + self.stream_deadline_s)
                if stream.closed is not None:
                    if stream.closed - stream.opened > self.stream_deadline_s:
                        return Outcome("too_slow", stream)
                    return self._decode(stream)
            remaining = deadline - self._clock()
            if remaining <= 0:
                return Outcome("too_slow" if stream is not None else "timeout", stream)
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    @staticmethod
    def _decode(stream: IncomingStream) -> Outcome:
        try:
            rate = int(stream.attributes["sampleRate"])
            channels = int(stream.attributes["channels"])
        except (KeyError, ValueError):
            return Outcome("missing_attributes", stream)
        if rate <= 0 or channels <= 0:
            return Outcome("missing_attributes", stream)
        if "opus" in stream.mime_type.lower():
            return Outcome("opus_not_supported", stream, rate, channels)  # the device sends PCM; say so loudly
        return Outcome("used", stream, rate, channels)
