"""livekit-agents' session protocol (`lk.agent.session`): decoding its messages, the policy's one source per
agent, and the supervisor reading fake byte streams in order — from the session's agent only — with the older
signals (`lk.agent.state`, `lk.agent.events`, `lk.transcription`) as the fallback of an agent without it."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from livekit.protocol.agent_pb import agent_session as pb

from device.config.schema import SessionConfig
from device.core.vocabulary import AgentState, AgentStateChanged, EndReason, SessionEnded
from device.session.agent_session import (
    AgentProtocol,
    AgentStateNews,
    Answer,
    ErrorNews,
    ItemNews,
    OtherNews,
    Role,
    SessionStateNews,
    UserStateNews,
    decode,
)
from device.session.policy import (
    AgentAttributesChanged,
    AgentSeen,
    AgentSpoke,
    AgentStateReported,
    AskAgentState,
    ConnectSucceeded,
    Emit,
    KeepTranscript,
    Policy,
    RoomReconnected,
    RoomReconnecting,
    Start,
    TimerDue,
    TimerName,
    UserAway,
)
from device.session.status import TranscriptLine
from tests.session.fakes import FakeTextReader

Event = pb.AgentSessionEvent
SESSION = AgentProtocol.SESSION


# ---- the messages, as livekit-agents' SessionHost builds them ------------------------------------------------------


def message(**event: object) -> bytes:
    return pb.AgentSessionMessage(event=Event(**event)).SerializeToString()


def agent_state(new: int, old: int = pb.AS_LISTENING) -> bytes:
    return message(agent_state_changed=Event.AgentStateChanged(old_state=old, new_state=new))


def user_state(new: int) -> bytes:
    return message(user_state_changed=Event.UserStateChanged(old_state=pb.US_LISTENING, new_state=new))


def said(role: int, *texts: str) -> bytes:
    item = pb.ChatContext.ChatItem(message=pb.ChatMessage(id="item_1", role=role,
                                                          content=[pb.ChatMessage.ChatContent(text=t) for t in texts]))
    return message(conversation_item_added=Event.ConversationItemAdded(item=item))


def state_answer(request_id: str, state: int, user: int = pb.US_LISTENING, error: str = "") -> bytes:
    response = pb.SessionResponse(request_id=request_id, error=error, get_session_state=(
        pb.SessionResponse.GetSessionStateResponse(agent_state=state, user_state=user)))
    return pb.AgentSessionMessage(response=response).SerializeToString()


# ---- decode -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "news"), [
    (agent_state(pb.AS_LISTENING, pb.AS_INITIALIZING), AgentStateNews(AgentState.LISTENING)),
    (agent_state(pb.AS_THINKING), AgentStateNews(AgentState.THINKING)),
    (agent_state(pb.AS_SPEAKING), AgentStateNews(AgentState.SPEAKING)),
    (agent_state(pb.AS_IDLE), AgentStateNews(AgentState.IDLE)),
    (user_state(pb.US_AWAY), UserStateNews(away=True)),
    (user_state(pb.US_SPEAKING), UserStateNews(away=False)),
    (said(pb.USER, "what time is it"), ItemNews(Role.USER, "what time is it")),
    (said(pb.ASSISTANT, "It is ", "noon."), ItemNews(Role.ASSISTANT, "It is \nnoon.")),
    (said(pb.SYSTEM, "be brief"), OtherNews("conversation_item_added")),
    (said(pb.ASSISTANT), OtherNews("conversation_item_added")),  # a turn that said nothing
    (message(conversation_item_added=Event.ConversationItemAdded(item=pb.ChatContext.ChatItem(
        function_call=pb.FunctionCall(name="lookup")))), OtherNews("conversation_item_added")),
    (message(error=Event.Error(message="stt failed")), ErrorNews("stt failed")),
    (message(session_usage_updated=Event.SessionUsageUpdated()), OtherNews("session_usage_updated")),
    (message(user_input_transcribed=Event.UserInputTranscribed(transcript="wha", is_final=False)),
     OtherNews("user_input_transcribed")),
    (pb.AgentSessionMessage(request=pb.SessionRequest(request_id="r", ping=pb.SessionRequest.Ping()))
     .SerializeToString(), OtherNews("request")),
])
def test_each_message_decodes_to_what_the_device_uses_of_it(data, news):
    assert decode(data) == news


def test_a_response_decodes_to_an_answer_to_its_request():
    assert decode(state_answer("r1", pb.AS_SPEAKING, pb.US_AWAY)) == Answer(
        "r1", "", SessionStateNews(AgentState.SPEAKING, away=True))
    pong = pb.AgentSessionMessage(response=pb.SessionResponse(request_id="r2", pong=pb.SessionResponse.Pong()))
    assert decode(pong.SerializeToString()) == Answer("r2", "", OtherNews("response:pong"))
    failed = pb.AgentSessionMessage(response=pb.SessionResponse(request_id="r3", error="internal error"))
    assert decode(failed.SerializeToString()) == Answer("r3", "internal error", None)


def test_what_is_not_a_message_is_refused():
    with pytest.raises(ValueError, match="not an AgentSessionMessage"):
        decode(b"\xff\xff\xff not a protobuf")


# ---- the policy: one source per agent ----------------------------------------------------------------------------


def connected(mode: str = "push_to_talk", **cfg: object) -> Policy:
    p = Policy(SessionConfig(mode=mode, **cfg), rng=random.Random(1))  # type: ignore[arg-type]
    p.handle(Start())
    p.handle(ConnectSucceeded())
    p.handle(AgentSeen("agent-1", active=True))
    return p


def states(actions: list) -> list[AgentState]:
    return [a.event.state for a in actions if isinstance(a, Emit) and isinstance(a.event, AgentStateChanged)]


def attribute(state: AgentState) -> AgentAttributesChanged:
    return AgentAttributesChanged(AgentSeen("agent-1", active=True, state=state), state_changed=True)


def test_the_session_protocol_reports_the_agents_state_like_the_attribute_does():
    by_protocol, by_attribute = connected(), connected()
    for state in (AgentState.LISTENING, AgentState.THINKING, AgentState.SPEAKING, AgentState.LISTENING):
        assert by_protocol.handle(AgentSpoke("agent-1", AgentStateNews(state))) == \
            by_attribute.handle(attribute(state))
    assert (by_protocol.agent_protocol, by_attribute.agent_protocol) == (SESSION, AgentProtocol.ATTRIBUTES)


def test_once_the_agent_speaks_the_session_protocol_its_attributes_no_longer_move_the_state():
    p = connected()
    assert states(p.handle(attribute(AgentState.LISTENING))) == [AgentState.LISTENING]
    assert p.agent_protocol is AgentProtocol.ATTRIBUTES
    # the same change by both: one transition
    assert states(p.handle(AgentSpoke("agent-1", AgentStateNews(AgentState.LISTENING)))) == []
    assert p.agent_protocol is SESSION
    assert states(p.handle(AgentSpoke("agent-1", AgentStateNews(AgentState.THINKING)))) == [AgentState.THINKING]
    assert p.handle(attribute(AgentState.THINKING)) == []
    assert p.handle(attribute(AgentState.LISTENING)) == []  # late, or stale: ignored
    assert p.agent_state is AgentState.THINKING
    assert states(p.handle(AgentSeen("agent-1", active=True, state=AgentState.SPEAKING))) == []
    assert p.agent_state is AgentState.THINKING


def test_only_the_sessions_agent_is_heard_and_another_is_logged_once(caplog):
    p = connected()
    caplog.set_level(logging.INFO, "device.session.policy")
    for _ in range(3):
        assert p.handle(AgentSpoke("agent-2", AgentStateNews(AgentState.SPEAKING))) == []
        assert p.handle(AgentSpoke("guest-1", ItemNews(Role.USER, "hi"))) == []
    assert p.agent_protocol is None and p.agent_state is None
    dropped = [r.getMessage() for r in caplog.records if "messages dropped" in r.getMessage()]
    assert len(dropped) == 2 and "sender=agent-2" in dropped[0] and "sender=guest-1" in dropped[1]


def test_conversation_items_of_the_agent_are_kept_as_transcripts():
    p = connected()
    assert p.handle(AgentSpoke("agent-1", ItemNews(Role.USER, "hello"))) == [KeepTranscript(Role.USER, "hello")]
    assert p.handle(AgentSpoke("agent-1", OtherNews("session_usage_updated"))) == []
    assert p.handle(AgentSpoke("agent-1", ErrorNews("tts failed"))) == []


def test_the_user_away_by_the_session_protocol_ends_the_conversation_once_the_agent_has_spoken():
    p = connected("wake_word")
    p.handle(AgentSpoke("agent-1", AgentStateNews(AgentState.SPEAKING)))
    assert p.handle(AgentSpoke("agent-1", UserStateNews(away=True))) == []
    actions = p.handle(AgentSpoke("agent-1", AgentStateNews(AgentState.LISTENING)))
    assert [a.event.reason for a in actions if isinstance(a, Emit) and isinstance(a.event, SessionEnded)] == [
        EndReason.USER_AWAY]


def test_once_the_agent_speaks_the_session_protocol_lk_agent_events_no_longer_count():
    p = connected("wake_word")
    p.handle(AgentSpoke("agent-1", AgentStateNews(AgentState.LISTENING)))
    assert p.handle(UserAway("agent-1")) == []
    assert p.handle(AgentSpoke("agent-1", UserStateNews(away=False))) == []
    assert any(isinstance(a, Emit) and isinstance(a.event, SessionEnded)
               for a in p.handle(AgentSpoke("agent-1", UserStateNews(away=True))))
    q = connected("wake_word")
    q.handle(attribute(AgentState.LISTENING))
    assert any(isinstance(a, Emit) and isinstance(a.event, SessionEnded) for a in q.handle(UserAway("agent-1")))


def test_after_a_reconnect_the_state_is_asked_of_an_agent_that_speaks_the_session_protocol():
    p = connected()
    p.handle(AgentSpoke("agent-1", AgentStateNews(AgentState.LISTENING)))
    p.handle(RoomReconnecting())
    assert AskAgentState("agent-1") in p.handle(RoomReconnected())
    # the answer: whatever the agent did meanwhile
    answer = p.handle(AgentSpoke("agent-1", SessionStateNews(AgentState.SPEAKING, away=False)))
    assert states(answer) == [AgentState.SPEAKING]
    q = connected()
    q.handle(attribute(AgentState.LISTENING))
    q.handle(RoomReconnecting())
    assert not any(isinstance(a, AskAgentState) for a in q.handle(RoomReconnected()))


def test_the_same_agent_back_after_a_full_restart_is_asked_its_state_and_another_starts_unknown():
    p = connected()
    p.handle(AgentSpoke("agent-1", AgentStateNews(AgentState.LISTENING)))
    from device.session.policy import AgentLeft

    p.handle(AgentLeft("agent-1"))
    assert AskAgentState("agent-1") in p.handle(AgentSeen("agent-1", active=True, state=AgentState.LISTENING))
    assert p.agent_protocol is SESSION
    p.handle(AgentLeft("agent-1"))
    actions = p.handle(AgentSeen("agent-9", active=True))
    assert not any(isinstance(a, AskAgentState) for a in actions) and p.agent_protocol is None


def test_an_agent_reporting_no_state_at_all_is_said_to_speak_neither_protocol(caplog):
    caplog.set_level(logging.INFO, "device.session.policy")
    p = connected(agent_connect_timeout_s=20)
    p.handle(TimerDue(TimerName.AGENT))
    assert any("speaks neither lk.agent.session nor the lk.agent.state attribute" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    q = connected(agent_connect_timeout_s=20)
    q.handle(AgentSpoke("agent-1", AgentStateNews(AgentState.INITIALIZING)))
    q.handle(TimerDue(TimerName.AGENT))
    assert not any("speaks neither" in r.getMessage() for r in caplog.records)


def test_a_state_by_the_session_protocol_counts_whatever_came_before():
    p = connected()
    p.handle(AgentStateReported(AgentState.LISTENING))
    assert states(p.handle(AgentStateReported(AgentState.THINKING, via=SESSION))) == [AgentState.THINKING]


# ---- the supervisor: fake byte streams ----------------------------------------------------------------------------


async def joined(rig, state: str | None = None):
    await rig.start()
    agent = rig.room.agent_joins(state=state)
    await rig.settle()
    return agent


async def test_the_agents_session_messages_drive_the_device_and_the_status_says_so(make_rig):
    rig = make_rig()
    await joined(rig)
    assert "lk.agent.session" in rig.room.byte_handlers
    rig.room.session_message("agent-1", agent_state(pb.AS_LISTENING, pb.AS_INITIALIZING))
    rig.room.session_message("agent-1", said(pb.USER, "what time is it"))
    rig.room.session_message("agent-1", agent_state(pb.AS_THINKING))
    rig.room.session_message("agent-1", agent_state(pb.AS_SPEAKING, pb.AS_THINKING))
    rig.room.session_message("agent-1", said(pb.ASSISTANT, "It is noon."))
    await rig.settle()
    assert [e.state for e in rig.of(AgentStateChanged)] == ["listening", "thinking", "speaking"]
    status = rig.sup.status()
    assert status.agent_protocol is SESSION and status.agent.state == "speaking"
    # the user's turn under the identity the device has in the room (the fake room's "device", as a literal
    # token's or a token server's would be), not the "device-test" it asked for; the status shows that one too
    assert rig.sup.status().identity == rig.room.local_participant.identity == "device"
    assert status.transcripts == (TranscriptLine("device", "what time is it"), TranscriptLine("agent-1", "It is noon."))


async def test_messages_are_taken_in_the_order_their_streams_opened_however_they_finish(make_rig):
    rig = make_rig()
    await joined(rig)
    slow = asyncio.Event()
    rig.room.session_message("agent-1", agent_state(pb.AS_THINKING), gate=slow)  # a long stream, still arriving
    rig.room.session_message("agent-1", agent_state(pb.AS_SPEAKING, pb.AS_THINKING))
    await rig.settle()
    assert rig.of(AgentStateChanged) == []
    slow.set()
    await rig.settle()
    assert [e.state for e in rig.of(AgentStateChanged)] == ["thinking", "speaking"]


async def test_a_stream_that_never_ends_is_given_up_and_the_next_messages_go_on(make_rig):
    rig = make_rig()
    await joined(rig)
    stuck = rig.room.session_message("agent-1", agent_state(pb.AS_THINKING), gate=asyncio.Event())
    rig.room.session_message("agent-1", agent_state(pb.AS_SPEAKING, pb.AS_THINKING))
    await rig.run_for(9.5)
    assert rig.of(AgentStateChanged) == [] and not stuck.closed
    await rig.run_for(1.0)
    assert [e.state for e in rig.of(AgentStateChanged)] == ["speaking"] and stuck.closed


async def test_an_agent_without_the_session_host_is_followed_by_its_attributes_and_streams(make_rig):
    rig = make_rig(mode="wake_word")
    agent = await joined(rig, state="listening")
    rig.room.text_handlers["lk.transcription"](FakeTextReader("hello there", {"lk.transcription_final": "true"}),
                                               "agent-1")
    rig.room.set_agent_state(agent, "speaking")
    await rig.settle()
    assert [e.state for e in rig.of(AgentStateChanged)] == ["listening", "speaking"]
    status = rig.sup.status()
    assert status.agent_protocol is AgentProtocol.ATTRIBUTES
    assert status.transcripts == (TranscriptLine("agent-1", "hello there"),)


async def test_an_agent_speaking_both_moves_the_state_once_and_its_transcripts_come_from_the_session(make_rig):
    rig = make_rig()
    agent = await joined(rig, state="initializing")
    rig.room.session_message("agent-1", agent_state(pb.AS_LISTENING, pb.AS_INITIALIZING))
    await rig.settle()
    rig.room.set_agent_state(agent, "listening")
    rig.room.set_agent_state(agent, "thinking")  # the attribute ahead of the event: not taken
    await rig.settle()
    assert [e.state for e in rig.of(AgentStateChanged)] == ["initializing", "listening"]
    rig.room.session_message("agent-1", agent_state(pb.AS_THINKING))
    rig.room.text_handlers["lk.transcription"](FakeTextReader("It is noon.", {"lk.transcription_final": "true"}),
                                               "agent-1")
    rig.room.session_message("agent-1", said(pb.ASSISTANT, "It is noon."))
    await rig.settle()
    assert [e.state for e in rig.of(AgentStateChanged)] == ["initializing", "listening", "thinking"]
    assert rig.sup.status().transcripts == (TranscriptLine("agent-1", "It is noon."),)


async def test_messages_from_anyone_but_the_sessions_agent_are_dropped(make_rig):
    rig = make_rig()
    await joined(rig, state="listening")
    rig.room.person_joins("guest-1")
    await rig.settle()
    rig.room.session_message("guest-1", agent_state(pb.AS_SPEAKING))
    rig.room.session_message("guest-1", said(pb.ASSISTANT, "I am the agent, trust me"))
    await rig.settle()
    assert [e.state for e in rig.of(AgentStateChanged)] == ["listening"]
    assert rig.sup.status().transcripts == () and rig.sup.status().agent_protocol is AgentProtocol.ATTRIBUTES


async def test_after_a_resume_the_device_asks_the_agent_its_state_and_takes_the_answer(make_rig):
    rig = make_rig()
    await joined(rig)
    rig.room.session_message("agent-1", agent_state(pb.AS_LISTENING, pb.AS_INITIALIZING))
    await rig.settle()
    rig.room.emit("reconnecting")
    await rig.settle()
    rig.room.emit("reconnected")
    await rig.settle()
    ((topic, data, to),) = rig.room.local_participant.sent_bytes
    request = pb.AgentSessionMessage.FromString(data).request
    assert (topic, to, request.WhichOneof("request")) == ("lk.agent.session", ["agent-1"], "get_session_state")
    rig.room.session_message("agent-1", state_answer("someone-elses", pb.AS_IDLE))  # not ours: ignored
    rig.room.session_message("agent-1", state_answer(request.request_id, pb.AS_SPEAKING))
    await rig.settle()
    assert rig.sup.status().agent.state == "speaking"


async def test_an_unanswered_request_gives_up_in_time_and_never_holds_the_session(make_rig, caplog):
    caplog.set_level(logging.INFO, "device.session.agent_session")
    rig = make_rig()
    agent = await joined(rig)
    rig.room.session_message("agent-1", agent_state(pb.AS_LISTENING, pb.AS_INITIALIZING))
    await rig.settle()
    rig.room.emit("reconnecting")
    rig.room.emit("reconnected")
    await rig.settle()
    assert rig.room.local_participant.sent_bytes
    rig.room.set_agent_state(agent, "thinking")  # ignored: the protocol is the source
    rig.room.session_message("agent-1", agent_state(pb.AS_THINKING))  # the session goes on meanwhile
    await rig.settle()
    assert rig.sup.status().agent.state == "thinking"
    await rig.run_for(5.1)
    assert any("did not answer get_session_state" in r.getMessage() for r in caplog.records)
    assert not rig.sup._asks
