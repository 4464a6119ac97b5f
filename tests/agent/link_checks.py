"""`python -m tests.agent.link_checks` on .venv-agent: the companion's DeviceLink against a fake room and session
(livekit-agents imported, no server). Each `check_*` is one specification; the result is one JSON line,
{check name: "ok" or the failure}, which tests/agent/test_link.py turns into one pytest test per check.
Nothing here may import the device or the test suite's helpers (this runs on livekit 1.1.21)."""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents import ToolError
from voice_device_agent import DeviceLink, attach
from voice_device_agent.contract import PROTOCOL_VERSION

STANDARD = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT


def device_attrs(mode: str) -> dict[str, str]:
    return {"voice_device.protocol": "1.0", "voice_device.mode": mode, "voice_device.version": "0.1.0"}


@dataclass
class FakeParticipant:
    identity: str
    kind: int = STANDARD
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeInvocation:
    caller_identity: str
    payload: str = ""


@dataclass
class FakeLocal:
    methods: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (destination, method, payload)
    answers: dict[str, Any] = field(default_factory=dict)  # method → reply text or an RpcError to raise

    def register_rpc_method(self, name: str, handler: Callable[[Any], Any]) -> None:
        self.methods[name] = handler

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.attributes.update(attributes)

    async def perform_rpc(self, *, destination_identity: str, method: str, payload: str,
                          response_timeout: float | None = None) -> str:
        self.calls.append((destination_identity, method, payload))
        answer = self.answers.get(method, "{}")
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    async def invoke(self, method: str, caller: str, payload: str = "") -> Any:
        return await self.methods[method](FakeInvocation(caller, payload))


@dataclass
class FakeRoom:
    remote_participants: dict[str, FakeParticipant] = field(default_factory=dict)
    local_participant: FakeLocal = field(default_factory=FakeLocal)
    connected: bool = True

    def isconnected(self) -> bool:
        return self.connected

    def join(self, p: FakeParticipant) -> FakeParticipant:
        self.remote_participants[p.identity] = p
        return p


class FakeInput:
    def __init__(self) -> None:
        self.audio_enabled = True

    def set_audio_enabled(self, enable: bool) -> None:
        self.audio_enabled = enable


class FakeRoomIO:
    def __init__(self) -> None:
        self.participant: str | None = None

    def set_participant(self, identity: str | None) -> None:
        self.participant = identity


class FakeSpeech:
    def __init__(self) -> None:
        self.played = asyncio.Event()

    async def wait_for_playout(self) -> None:
        await self.played.wait()


class FakeSession:
    def __init__(self) -> None:
        self.input = FakeInput()
        self.room_io = FakeRoomIO()
        self.turn_detection: str | None = "vad"
        self.log: list[str] = []
        self.handlers: dict[str, list[Callable[[Any], None]]] = {}
        self.current_speech: FakeSpeech | None = None

    def update_options(self, *, turn_detection: str) -> None:
        self.turn_detection = turn_detection

    def interrupt(self) -> None:
        self.log.append("interrupt")

    def clear_user_turn(self) -> None:
        self.log.append("clear")

    def commit_user_turn(self, *, transcript_timeout: float) -> None:
        self.log.append("commit")

    def on(self, event: str, handler: Callable[[Any], None]) -> None:
        self.handlers.setdefault(event, []).append(handler)

    def emit(self, event: str, ev: Any) -> None:
        for handler in self.handlers.get(event, []):
            handler(ev)


@dataclass
class UserState:
    new_state: str
    old_state: str = "listening"


async def linked(mode: str | None, **kwargs: Any) -> tuple[DeviceLink, FakeSession, FakeRoom]:
    room, session = FakeRoom(), FakeSession()
    room.join(FakeParticipant("agent-other", kind=AGENT))
    room.join(FakeParticipant("device-1", attributes=device_attrs(mode) if mode else {}))
    link = await attach(session, room, wait_s=0.2, **kwargs)  # type: ignore[arg-type]
    await asyncio.sleep(0.01)  # the attribute goes out in the background
    return link, session, room


def tool(link: DeviceLink, name: str) -> Any:
    return next(t for t in link.tools() if t.info.name == name)  # type: ignore[union-attr]


# ---- the checks ------------------------------------------------------------------------------------------------


async def check_a_push_to_talk_device_gets_manual_turns_with_the_input_off_until_start_turn() -> None:
    link, session, room = await linked("push_to_talk")
    assert link.device.mode == "push_to_talk" and link.device.identity == "device-1"
    assert session.turn_detection == "manual" and session.input.audio_enabled is False
    assert room.local_participant.attributes == {"voice_device.agent_protocol": PROTOCOL_VERSION}
    assert await room.local_participant.invoke("start_turn", "device-1") == "ok"
    assert session.input.audio_enabled is True and session.room_io.participant == "device-1"
    assert session.log == ["interrupt", "clear"]
    await room.local_participant.invoke("end_turn", "device-1")
    assert session.input.audio_enabled is False and session.log[-1] == "commit"
    await room.local_participant.invoke("start_turn", "device-1")
    await room.local_participant.invoke("cancel_turn", "device-1")
    assert session.input.audio_enabled is False and session.log[-1] == "clear"


async def check_only_the_device_takes_turns() -> None:
    _, session, room = await linked("push_to_talk")
    try:
        await room.local_participant.invoke("start_turn", "someone-else")
    except rtc.RpcError as e:
        assert e.code == 2002, e.code
    else:
        raise AssertionError("a stranger's start_turn was served")
    assert session.input.audio_enabled is False


async def check_a_voice_activity_mode_keeps_the_agent_s_own_turn_detection() -> None:
    for mode in ("wake_word", "always_on", "toggle"):
        link, session, _ = await linked(mode)
        assert session.turn_detection == "vad" and session.input.audio_enabled is True, mode
        assert not link.manual_turns


async def check_a_device_without_the_protocol_gets_manual_turns_from_its_first_start_turn() -> None:
    link, session, room = await linked(None)
    assert link.device.protocol is None and link.device.identity == "device-1"
    assert session.turn_detection == "vad" and session.input.audio_enabled is True
    await room.local_participant.invoke("start_turn", "device-1")
    assert link.manual_turns and session.turn_detection == "manual" and session.input.audio_enabled is True


async def check_attach_needs_a_connected_room() -> None:
    room = FakeRoom(connected=False)
    try:
        await attach(FakeSession(), room)  # type: ignore[arg-type]
    except RuntimeError as e:
        assert "ctx.connect()" in str(e)
    else:
        raise AssertionError("attached to a room that is not connected")


async def check_a_wake_word_conversation_ends_with_device_end_session_after_the_agent_s_speech() -> None:
    link, session, room = await linked("wake_word")
    speech = FakeSpeech()
    session.current_speech = speech
    session.emit("user_state_changed", UserState("away"))
    await asyncio.sleep(0.05)
    assert room.local_participant.calls == [], "ended while the agent was still speaking"
    speech.played.set()
    await asyncio.sleep(0.05)
    assert room.local_participant.calls == [("device-1", "device.end_session", "")]
    await link.end_conversation()
    assert len(room.local_participant.calls) == 1, "ended twice"


async def check_a_device_that_leaves_before_answering_end_session_has_ended_the_conversation() -> None:
    """The device ends at once and may be gone before its answer arrives (1503 on the agent's side)."""
    link, _, room = await linked("always_on")
    room.local_participant.answers["device.end_session"] = rtc.RpcError(1503, "Recipient disconnected")
    await link.end_conversation()
    assert link.ended
    room.local_participant.answers["device.end_session"] = rtc.RpcError(2002, "only the agent of this session")
    other, _, _ = await linked("always_on")
    other.room.local_participant.answers = room.local_participant.answers
    try:
        await other.end_conversation()
    except Exception as e:
        assert getattr(e, "code", None) == 2002
    else:
        raise AssertionError("a refusal was taken for an end")


async def check_the_tools_call_the_device_s_methods() -> None:
    link, _, room = await linked("wake_word")
    assert [t.info.name for t in link.tools()] == ["set_volume", "end_conversation", "get_device_status"]  # type: ignore[union-attr]
    lp = room.local_participant
    lp.answers["device.set_volume"] = '{"volume": 0.3}'
    assert await tool(link, "set_volume")(0.3) == "The device's volume is now 30 %."
    assert lp.calls[-1] == ("device-1", "device.set_volume", '{"volume": 0.3}')
    lp.answers["device.get_status"] = json.dumps({"phase": "connected", "muted": False, "transcripts": ["private"]})
    status = json.loads(await tool(link, "get_device_status")())
    assert status == {"phase": "connected", "muted": False, "mode": "wake_word", "device_version": "0.1.0"}


async def check_what_the_device_refuses_reaches_the_llm_as_a_tool_error() -> None:
    link, _, room = await linked("push_to_talk")
    room.local_participant.answers["device.set_volume"] = rtc.RpcError(2002, "only the agent of this session")
    for call in (tool(link, "set_volume")(0.5), tool(link, "set_volume")(7.0)):
        try:
            await call
        except ToolError as e:
            assert "volume was not changed" in str(e)
        else:
            raise AssertionError("no ToolError")
    assert len(room.local_participant.calls) == 1, "a volume out of range was sent"


async def check_the_tools_can_be_chosen() -> None:
    link, _, _ = await linked("toggle")
    assert [t.info.name for t in link.tools(allow=["get_device_status"])] == ["get_device_status"]  # type: ignore[union-attr]
    try:
        link.tools(allow=["reboot"])
    except ValueError as e:
        assert "reboot" in str(e)
    else:
        raise AssertionError("an unknown tool was accepted")


async def check_a_subclass_is_what_attach_builds() -> None:
    class Mine(DeviceLink):
        pass

    room, session = FakeRoom(), FakeSession()
    room.join(FakeParticipant("device-1", attributes=device_attrs("push_to_talk")))
    assert type(await Mine.attach(session, room)) is Mine  # type: ignore[arg-type]


CHECKS: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
    name: fn for name, fn in sorted(globals().items()) if name.startswith("check_") and callable(fn)}


def main() -> int:
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            asyncio.run(check())
            results[name] = "ok"
        except Exception:
            results[name] = traceback.format_exc(limit=4)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
