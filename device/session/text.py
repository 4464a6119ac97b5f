"""Text on the room: the conversation's final turns (kept in memory for status; logged only with
`logging.transcripts`: what people say stays out of the journal), the agent's session events on `lk.agent.events`,
and typed text the device sends on `lk.chat`.

The turns come from the agent's session host (`lk.agent.session`'s conversation items, `KeepTranscript`) once the
agent speaks that protocol, and until then from the transcripts it streams on `lk.transcription`: one source per
agent (`Transcripts.streamed` says whether the streams count).

`lk.agent.events` (the ClientEventsHandler of livekit-agents before its session host; 1.8.9 no longer sends it):
one text stream per event, its text a JSON object with a `type` — `agent_state_changed`, `user_state_changed`
(`old_state`, `new_state`: speaking | listening | away), `conversation_item_added`, `user_input_transcribed`,
`metrics_collected`, `function_tools_executed`, `error` — and `created_at`. The device acts on one:
`user_state_changed` to `away` (AgentSession's `user_away_timeout`, 15 s by default), which hello-wakeword also
ends its room on; an agent with a session host says the same there.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from device.core.agent_contract import Topic

if TYPE_CHECKING:
    from livekit import rtc

log = logging.getLogger("device.session.text")

TRANSCRIPTION_TOPIC = Topic.TRANSCRIPTION.value
CHAT_TOPIC = Topic.CHAT.value
AGENT_EVENTS_TOPIC = Topic.AGENT_EVENTS.value
FINAL_ATTR = "lk.transcription_final"
TRACK_ATTR = "lk.transcribed_track_id"
SEGMENT_ATTR = "lk.segment_id"


@dataclass(frozen=True)
class Transcript:
    speaker: str  # participant identity that sent it
    text: str
    track_id: str
    segment_id: str


class StreamReaders:
    """One task per incoming text stream of a topic: `room.register_text_stream_handler(TOPIC, x.handler)`;
    `aclose()` cancels those still reading."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def handler(self, reader: rtc.TextStreamReader, participant_identity: str) -> None:
        task = asyncio.get_running_loop().create_task(self._read(reader, participant_identity))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, reader: rtc.TextStreamReader, identity: str) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Transcripts(StreamReaders):
    """The last `keep` final turns (in memory), from `lk.transcription` while `streamed()` or `keep_turn`; logged
    only when `log_them`."""

    def __init__(self, keep: int = 10, *, log_them: bool = False, streamed: Callable[[], bool] = lambda: True):
        super().__init__()
        self.last: deque[Transcript] = deque(maxlen=keep)
        self._log_them = log_them
        self._streamed = streamed

    def keep_turn(self, speaker: str, text: str) -> None:
        self._keep(Transcript(speaker, text.strip(), "", ""))

    def _keep(self, t: Transcript) -> None:
        self.last.append(t)
        if self._log_them:
            log.info("transcript speaker=%s text=%r", t.speaker, t.text)

    async def _read(self, reader: rtc.TextStreamReader, identity: str) -> None:
        try:
            text = await reader.read_all()
        except Exception as e:
            log.debug("transcript stream failed speaker=%s error=%s", identity, e)
            return
        attrs = reader.info.attributes or {}  # the trailer's attributes are merged in at the end
        if attrs.get(FINAL_ATTR) != "true" or not text.strip() or not self._streamed():
            return
        self._keep(Transcript(identity, text.strip(), attrs.get(TRACK_ATTR, ""), attrs.get(SEGMENT_ATTR, "")))


def user_went_away(text: str) -> bool:
    """Whether one `lk.agent.events` message says the user is away (anything unreadable says no)."""
    try:
        event = json.loads(text)
    except ValueError:
        return False
    return isinstance(event, dict) and event.get("type") == "user_state_changed" and event.get("new_state") == "away"


class AgentEvents(StreamReaders):
    """`lk.agent.events`: `on_away(identity)` when the agent reports the user away."""

    def __init__(self, on_away: Callable[[str], None]) -> None:
        super().__init__()
        self._on_away = on_away

    async def _read(self, reader: rtc.TextStreamReader, identity: str) -> None:
        try:
            text = await reader.read_all()
        except Exception as e:
            log.debug("agent event stream failed sender=%s error=%s", identity, e)
            return
        if user_went_away(text):
            log.info("agent reports the user away agent=%s", identity)
            self._on_away(identity)
