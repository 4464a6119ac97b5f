"""The audio of a session process: the child's `AudioPort` whose engine lives in the daemon.

The mic is read from the shared ring (`RingView`) by index, for each reader the supervisor opens, as far as the mic
socket's records say the ring has grown; the speaker is the daemon's, reached through the channel (`Play`,
`PlayEnd`, `Flush`, `Volume`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import numpy as np

from device.audio.ring import Overrun
from device.audio.shared import RingView
from device.session.process.ipc import Channel
from device.session.process.protocol import MIC_EOF, MIC_RECORD, CloseReader, Flush, OpenReader, Play, PlayEnd, Volume

if TYPE_CHECKING:
    from livekit import rtc

log = logging.getLogger("device.session.process.child_audio")

MAX_CHUNK_S = 0.2  # history (the pre-roll) is delivered in pieces of at most this, as the daemon's reader does


class RemoteReader:
    """The mic from a ring index on, read from the shared ring up to each end index the daemon announces: the
    same chunks, at the same indices, as the daemon's own reader (whole 10 ms frames, at most 200 ms each)."""

    def __init__(self, audio: RemoteAudio, rid: int, start: int) -> None:
        self._audio = audio
        self.rid = rid
        self.position = start
        self.dropped = 0  # samples overwritten before this reader got them (a child seconds behind)
        self._started = False
        self.queue: asyncio.Queue[tuple[int, np.ndarray] | None] = asyncio.Queue()
        self.closed = False

    def __aiter__(self) -> AsyncIterator[tuple[int, np.ndarray]]:
        return self

    async def __anext__(self) -> tuple[int, np.ndarray]:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        return item

    def head(self) -> int:
        """The end of the ring the daemon has announced (everything below it is queued or read)."""
        return self.position

    def feed(self, view: RingView, end: int) -> None:
        """The ring now ends at `end`: queue the chunks from here to there."""
        step = max(1, round(MAX_CHUNK_S * self._audio.sample_rate))
        while self.position < end:
            upto = min(end, self.position + step)
            try:
                samples = view.read(self.position, upto)
            except Overrun as e:
                if self._started:  # a start already gone from the ring is clamped, as the daemon's reader does
                    self.dropped += e.lost
                    log.warning("mic reader fell behind the ring rid=%d lost_samples=%d", self.rid, e.lost)
                self.position = e.oldest
                continue
            self._started = True
            self.queue.put_nowait((self.position, samples))
            self.position = upto

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._audio.close_reader(self.rid)
            self.queue.put_nowait(None)


class RemotePlayer:
    """The daemon's speaker: frames and flushes are sent, the volume is mirrored."""

    def __init__(self, chan: Channel, volume: float) -> None:
        self._chan = chan
        self._volume = volume

    @property
    def volume(self) -> float:
        return self._volume

    @volume.setter
    def volume(self, value: float) -> None:  # the daemon's player clamps it
        self._volume = float(value)
        self._chan.send(Volume(self._volume))

    def push(self, frame: rtc.AudioFrame) -> None:
        self._chan.send(Play(bytes(frame.data), frame.sample_rate, frame.num_channels, frame.samples_per_channel))

    def end(self) -> None:
        self._chan.send(PlayEnd())

    def flush(self) -> None:
        self._chan.send(Flush())


class RemoteAudio:
    """The `AudioPort` of a supervisor whose audio engine lives in the daemon: the mic from the shared ring (`view`)
    as far as the mic socket's records say, the speaker through the channel. Marks are the daemon's: they come with
    each start (`StartCall`, `StartTurnCall`)."""

    def __init__(self, chan: Channel, sample_rate: int, volume: float, view: RingView, mic: socket.socket) -> None:
        self._chan = chan
        self.sample_rate = sample_rate
        self.player = RemotePlayer(chan, volume)
        self._view = view
        self._mic = mic
        self._readers: dict[int, RemoteReader] = {}
        self._next = 0
        mic.setblocking(False)
        asyncio.get_running_loop().add_reader(mic.fileno(), self._on_mic)

    def reader(self, start_index: int) -> RemoteReader:
        self._next += 1
        reader = RemoteReader(self, self._next, int(start_index))
        self._readers[reader.rid] = reader
        self._chan.send(OpenReader(reader.rid, int(start_index)))
        return reader

    def close_reader(self, rid: int) -> None:
        if self._readers.pop(rid, None) is not None:
            self._chan.send(CloseReader(rid))

    def _on_mic(self) -> None:
        while True:
            try:
                record = self._mic.recv(MIC_RECORD.size)
            except BlockingIOError:
                return
            except OSError:
                record = b""
            if not record:  # the daemon is gone: its channel's end ends the session
                asyncio.get_running_loop().remove_reader(self._mic.fileno())
                return
            rid, end = MIC_RECORD.unpack(record)
            reader = self._readers.get(rid)
            if reader is None:
                continue
            if end == MIC_EOF:
                self._readers.pop(rid, None)
                reader.closed = True
                reader.queue.put_nowait(None)
            else:
                reader.feed(self._view, end)
