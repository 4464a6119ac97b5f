"""Text on the room: transcripts the agent sends on `lk.transcription` (final segments are logged and kept for
status) and typed text the device sends on `lk.chat`."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from livekit import rtc

log = logging.getLogger("device.session.text")

TRANSCRIPTION_TOPIC = "lk.transcription"
CHAT_TOPIC = "lk.chat"
FINAL_ATTR = "lk.transcription_final"
TRACK_ATTR = "lk.transcribed_track_id"
SEGMENT_ATTR = "lk.segment_id"


@dataclass(frozen=True)
class Transcript:
    speaker: str  # participant identity that sent it
    text: str
    track_id: str
    segment_id: str


class Transcripts:
    def __init__(self, keep: int = 10):
        self.last: deque[Transcript] = deque(maxlen=keep)
        self._tasks: set[asyncio.Task[None]] = set()

    def handler(self, reader: rtc.TextStreamReader, participant_identity: str) -> None:
        """`room.register_text_stream_handler(TRANSCRIPTION_TOPIC, transcripts.handler)`"""
        task = asyncio.get_running_loop().create_task(self._read(reader, participant_identity))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, reader: rtc.TextStreamReader, identity: str) -> None:
        try:
            text = await reader.read_all()
        except Exception as e:
            log.debug("transcript stream failed speaker=%s error=%s", identity, e)
            return
        attrs = reader.info.attributes or {}  # the trailer's attributes are merged in at the end
        if attrs.get(FINAL_ATTR) != "true" or not text.strip():
            return
        t = Transcript(identity, text.strip(), attrs.get(TRACK_ATTR, ""), attrs.get(SEGMENT_ATTR, ""))
        self.last.append(t)
        log.info("transcript speaker=%s text=%r", identity, t.text)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
