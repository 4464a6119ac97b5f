"""Only the session's agent commands the device: `device.set_volume`, `device.end_session` and
`device.get_status` (which carries the transcripts) are refused to anyone else in the room, and the refusal is
logged without the payload."""

from __future__ import annotations

import json
import logging

import pytest
from livekit import rtc

from device.core.vocabulary import SessionEnded
from device.session.device_rpc import END_SESSION, GET_STATUS, PERMISSION_DENIED, SET_VOLUME
from tests.session.conftest import make_config
from tests.session.fakes import ACTIVE, AGENT, FakeRemoteParticipant, FakeTextReader

METHODS = [(SET_VOLUME, '{"volume": 0.9}'), (END_SESSION, ""), (GET_STATUS, "")]


def refused(lp, method: str, payload: str, caller: str) -> rtc.RpcError:
    with pytest.raises(rtc.RpcError) as info:
        lp.invoke(method, payload, caller=caller)
    assert info.value.code == PERMISSION_DENIED
    return info.value


@pytest.mark.parametrize(("method", "payload"), METHODS)
async def test_a_participant_that_is_not_the_agent_is_refused_and_logged_without_the_payload(
        make_rig, caplog, method, payload):
    rig = make_rig()
    await rig.start()
    rig.room.agent_joins(state="listening")
    rig.room.person_joins("guest-1")
    await rig.settle()
    rig.audio.player.volume = 0.5
    lp = rig.room.local_participant

    with caplog.at_level(logging.DEBUG, logger="device"):
        refused(lp, method, payload, caller="guest-1")
    await rig.settle()

    assert rig.audio.player.volume == 0.5
    assert not rig.of(SessionEnded) and rig.sup.status().phase == "connected"
    lines = [r.getMessage() for r in caplog.records if r.name == "device.session.device_rpc"]
    assert lines == [f"device RPC refused method={method} caller=guest-1: only the session's agent may command "
                     "the device"]
    if payload:
        assert all(payload not in r.getMessage() for r in caplog.records)


async def test_the_status_with_its_transcripts_is_not_given_to_another_participant(make_rig):
    rig = make_rig()
    await rig.start()
    rig.room.agent_joins(state="listening")
    rig.room.person_joins("guest-1")
    rig.room.text_handlers["lk.transcription"](FakeTextReader("my pin is 1234", {"lk.transcription_final": "true"}),
                                               "device")
    await rig.settle()
    error = refused(rig.room.local_participant, GET_STATUS, "", caller="guest-1")
    assert "1234" not in error.message


async def test_the_dispatched_agent_is_served(make_rig):
    rig = make_rig()
    await rig.start()
    rig.room.agent_joins(state="listening")
    await rig.settle()
    lp = rig.room.local_participant
    assert json.loads(lp.invoke(SET_VOLUME, '{"volume": 0.3}', caller="agent-1")) == {"volume": 0.3}
    assert rig.audio.player.volume == 0.3
    assert json.loads(lp.invoke(GET_STATUS, caller="agent-1"))["agent"]["identity"] == "agent-1"
    lp.invoke(END_SESSION, caller="agent-1")
    await rig.settle()
    assert rig.of(SessionEnded)[-1].reason == "agent-ended"


async def test_an_agent_other_than_the_dispatched_one_is_not_the_sessions_agent_and_is_refused(make_rig):
    rig = make_rig(config=make_config(agent_name="test-agent"))
    await rig.start()
    rig.room.agent_joins("agent-other", state="listening", attributes={"lk.agent.name": "note-taker"})
    await rig.settle()
    assert rig.sup.status().agent.identity is None
    rig.room.agent_joins("agent-1", state="listening")
    await rig.settle()
    assert rig.sup.status().agent.identity == "agent-1"

    lp = rig.room.local_participant
    for method, payload in METHODS:
        refused(lp, method, payload, caller="agent-other")
    assert json.loads(lp.invoke(GET_STATUS, caller="agent-1"))["phase"] == "connected"


async def test_without_agent_name_the_first_agent_participant_commands_the_device(make_rig):
    rig = make_rig(config=make_config(agent_name=None))
    await rig.start()
    rig.room.agent_joins("agent-a", state="listening", attributes={"lk.agent.name": "anything"})
    rig.room.agent_joins("agent-b", state="listening")
    await rig.settle()
    lp = rig.room.local_participant
    for method, payload in METHODS:
        refused(lp, method, payload, caller="agent-b")
    assert json.loads(lp.invoke(SET_VOLUME, '{"volume": 0.2}', caller="agent-a")) == {"volume": 0.2}


async def test_an_agent_in_the_room_before_the_device_is_served_before_its_join_is_handled(make_rig):
    # its RPC can come while the device still publishes its mic: the room is asked by the same rule
    present = FakeRemoteParticipant("agent-7", kind=AGENT, state=ACTIVE, attributes={"lk.agent.name": "test-agent"})
    guest = FakeRemoteParticipant("guest-1", kind=AGENT, state=ACTIVE, attributes={"lk.agent.name": "other"})
    rig = make_rig("hold-publish", present=[guest, present])
    await rig.start()
    lp = rig.room.local_participant
    assert lp.rpc_handlers and rig.sup.status().agent.identity is None  # registered; the mic not yet published
    assert json.loads(lp.invoke(GET_STATUS, caller="agent-7"))["phase"] == "connecting"
    refused(lp, GET_STATUS, "", caller="guest-1")
    assert lp.publish_gate is not None
    lp.publish_gate.set()
    await rig.settle()
    assert rig.sup.status().agent.identity == "agent-7"
