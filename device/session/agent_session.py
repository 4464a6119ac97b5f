"""livekit-agents' own session protocol, `lk.agent.session` (read in livekit-agents 1.8.9, voice/remote_session.py),
at the device's boundary.

Every primary `AgentSession` runs a session host in its room: one `AgentSessionMessage` protobuf (livekit-protocol's
`agent_pb.agent_session`) per byte stream on topic `lk.agent.session`, sent to every participant — events
(`agent_state_changed`, `user_state_changed`, `conversation_item_added`, usage, tool calls, errors ...) and the
responses to requests, each carrying its request's `request_id`; it reads requests on the same topic. Messages are
read one stream after the other, in the order they were opened (as livekit-agents' own transport does): two
streams read at once could deliver a state change after the one that followed it.

`decode` turns one message into the `News` the device acts on; `SessionStreams` reads the streams of a room in
order and hands each message on; `SessionRequests` sends the requests the device uses and matches their answers.
The device asks one thing: `get_session_state`, when it may have missed the agent's events (see `policy.py`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from device.core.vocabulary import AgentState
from device.session.clock import Clock, within

if TYPE_CHECKING:
    from livekit import rtc
    from livekit.protocol.agent_pb import agent_session as pb

log = logging.getLogger("device.session.agent_session")

TOPIC = "lk.agent.session"
STATE_TIMEOUT_S = 5.0  # how long an unanswered get_session_state is waited for (an agent without a session host)
STREAM_TIMEOUT_S = 10.0  # a message is one small stream: one that never ends is given up (the next ones wait on it)


class AgentProtocol(StrEnum):
    """Which protocol the session's agent reports itself in (`SessionStatus.agent_protocol`)."""

    SESSION = "lk.agent.session"  # livekit-agents' session host: state, user state, conversation items
    ATTRIBUTES = "attributes"  # the older signals: lk.agent.state, lk.agent.events, lk.transcription


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


# ---- what a message tells the device ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentStateNews:
    """`agent_state_changed`: the agent's new state."""

    state: AgentState


@dataclass(frozen=True)
class UserStateNews:
    """`user_state_changed`: whether the user is now `away` (AgentSession's user_away_timeout)."""

    away: bool


@dataclass(frozen=True)
class SessionStateNews:
    """The answer to `get_session_state`: the agent's state and the user's, now."""

    state: AgentState
    away: bool


@dataclass(frozen=True)
class ItemNews:
    """`conversation_item_added` of a message with text: a user's or the agent's turn, final."""

    role: Role
    text: str


@dataclass(frozen=True)
class ErrorNews:
    """`error`: the agent's session reports an error (its STT, LLM or TTS failed)."""

    message: str


@dataclass(frozen=True)
class OtherNews:
    """Anything else (usage, tool calls, a request, a response to someone else): it proves the protocol only."""

    kind: str


News = AgentStateNews | UserStateNews | SessionStateNews | ItemNews | ErrorNews | OtherNews


@dataclass(frozen=True)
class Answer:
    """A response: to `request_id`, `news` what it says (None when it failed: `error`)."""

    request_id: str
    error: str
    news: News | None


def _pb() -> type[pb.AgentSessionMessage]:
    from livekit.protocol.agent_pb import agent_session

    return agent_session.AgentSessionMessage


def _agent_state(value: int) -> AgentState:
    from livekit.protocol.agent_pb import agent_session

    return AgentState.of(agent_session.AgentState.Name(value).removeprefix("AS_").lower()) or AgentState.IDLE


def _away(value: int) -> bool:
    from livekit.protocol.agent_pb import agent_session

    return bool(value == agent_session.US_AWAY)


def decode(data: bytes) -> News | Answer:
    """One message (raises `ValueError` when it is not one)."""
    msg = _pb()()
    try:
        msg.ParseFromString(data)
    except Exception as e:  # google.protobuf.message.DecodeError
        raise ValueError(f"not an AgentSessionMessage: {e}") from None
    which = msg.WhichOneof("message")
    if which == "response":
        r = msg.response
        news: News | None = None
        if r.HasField("get_session_state"):
            s = r.get_session_state
            news = SessionStateNews(_agent_state(s.agent_state), _away(s.user_state))
        elif not r.error:
            news = OtherNews(f"response:{r.WhichOneof('response') or ''}")
        return Answer(r.request_id, r.error, news)
    if which != "event":
        return OtherNews(which or "empty")
    return _event(msg.event)


def _event(event: pb.AgentSessionEvent) -> News:
    from livekit.protocol.agent_pb import agent_session

    kind = event.WhichOneof("event") or "empty"
    if kind == "agent_state_changed":
        return AgentStateNews(_agent_state(event.agent_state_changed.new_state))
    if kind == "user_state_changed":
        return UserStateNews(_away(event.user_state_changed.new_state))
    if kind == "error":
        return ErrorNews(event.error.message)
    if kind == "conversation_item_added" and event.conversation_item_added.item.HasField("message"):
        message = event.conversation_item_added.item.message
        text = "\n".join(c.text for c in message.content if c.text).strip()
        role = {agent_session.USER: Role.USER, agent_session.ASSISTANT: Role.ASSISTANT}.get(message.role)
        if role is not None and text:
            return ItemNews(role, text)
    return OtherNews(kind)


def get_session_state(request_id: str) -> bytes:
    from livekit.protocol.agent_pb import agent_session

    request = agent_session.SessionRequest(request_id=request_id,
                                           get_session_state=agent_session.SessionRequest.GetSessionState())
    return _pb()(request=request).SerializeToString()


# ---- reading ---------------------------------------------------------------------------------------------------


class SessionStreams:
    """`room.register_byte_stream_handler(TOPIC, ...)`: the streams of every room, read one after the other (each
    within `STREAM_TIMEOUT_S` on `clock`); each message goes to `on_message(tag, sender identity, news or answer)`
    (`tag`: the room's connect attempt)."""

    def __init__(self, on_message: Callable[[int, str, News | Answer], None], clock: Clock) -> None:
        self._on_message = on_message
        self._clock = clock
        self._queue: asyncio.Queue[tuple[int, rtc.ByteStreamReader, str]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def handler(self, tag: int) -> Callable[[rtc.ByteStreamReader, str], None]:
        def opened(reader: rtc.ByteStreamReader, identity: str) -> None:
            self._queue.put_nowait((tag, reader, identity))
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._read_all())

        return opened

    async def _read_all(self) -> None:
        while True:
            tag, reader, identity = await self._queue.get()
            try:
                message = decode(await within(self._clock, _read(reader), STREAM_TIMEOUT_S))
            except Exception as e:  # a stream cut off (StreamError) or never ended, a message this version cannot read
                log.debug("session message unreadable sender=%s error=%s", identity, e)
                reader.close()  # its subscription to the SDK's events ends with it
                continue
            try:
                self._on_message(tag, identity, message)
            except Exception:
                log.exception("session message consumer failed sender=%s", identity)

    async def aclose(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()[1].close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _read(reader: rtc.ByteStreamReader) -> bytes:
    return b"".join([chunk async for chunk in reader])


# ---- asking ----------------------------------------------------------------------------------------------------


class SessionRequests:
    """Requests to the agent on `TOPIC`; the session host answers every participant, so an answer is ours only by
    its `request_id` (and its sender). `ask_state` never raises and waits at most `timeout_s` on `clock`: an agent
    without a session host never answers."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._pending: dict[str, tuple[str, asyncio.Future[Answer]]] = {}

    async def ask_state(self, lp: rtc.LocalParticipant, agent: str, timeout_s: float = STATE_TIMEOUT_S) -> bool:
        """Send `get_session_state` to `agent`; whether it answered in time (the answer itself goes the way of
        every message, in order: `answered`)."""
        request_id = f"vd-{uuid.uuid4().hex[:12]}"
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (agent, future)
        try:
            await lp.send_bytes(get_session_state(request_id), topic=TOPIC, destination_identities=[agent])
            answer = await within(self._clock, future, timeout_s)
        except TimeoutError:
            log.info("agent did not answer get_session_state agent=%s within %g s", agent, timeout_s)
            return False
        except Exception as e:
            log.info("get_session_state failed agent=%s error=%s", agent, e)
            return False
        finally:
            self._pending.pop(request_id, None)
        if answer.error:
            log.info("get_session_state refused agent=%s error=%s", agent, answer.error)
        else:
            log.info("get_session_state answered agent=%s", agent)
        return not answer.error

    def answered(self, identity: str, answer: Answer) -> bool:
        """Whether `answer` (from `identity`) answers a request of ours; it ends that request's wait."""
        pending = self._pending.get(answer.request_id)
        if pending is None or pending[0] != identity:
            return False
        if not pending[1].done():
            pending[1].set_result(answer)
        return True
