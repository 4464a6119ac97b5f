"""`DeviceLink`: an `AgentSession` paired with the voice-device in its room, the agent's half of PROTOCOL.md.

    await ctx.connect()
    device = await voice_device_agent.attach(session, ctx.room)
    await session.start(agent=Agent(instructions=..., tools=device.tools()), room=ctx.room)

`attach` runs between `ctx.connect()` and `session.start`, and must be followed by `session.start` at once: it
reads the device's attributes (mode, protocol and software version), says which protocol this agent speaks
(`voice_device.agent_protocol`, before the agent's first state, so the device logs it once), and for a
push-to-talk device turns the session to manual turns with its input off until the device's `start_turn`. Why
before: a push-to-talk device calls `start_turn` as soon as the agent is ready (its first state), and an agent
without the method then loses push-to-talk for the whole session; the RPC methods can only be registered on a
connected room. The cost: the session's pre-connect audio handler is registered after the connection
(livekit-agents logs a warning when it takes a buffer), so nothing may be awaited in between. The push-to-talk
RPCs are registered for every device: one that publishes no mode but calls `start_turn` gets manual turns from
that call on. A wake-word conversation is ended the way the device expects: `device.end_session` once the agent
has finished speaking — by the LLM's `end_conversation` tool, by `end_conversation()`, or when the session
reports the user away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

from livekit import rtc
from livekit.agents import AgentSession, RunContext, ToolError, UserStateChangedEvent, function_tool, llm

from voice_device_agent.contract import (
    PROTOCOL_VERSION,
    AgentAttribute,
    AgentMethod,
    DeviceInfo,
    DeviceMethod,
    DeviceMode,
    RpcErrorCode,
    parse_volume_reply,
    status_summary,
    volume_payload,
)

log = logging.getLogger("voice_device_agent")

TOOLS = ("set_volume", "end_conversation", "get_device_status")
DEVICE_WAIT_S = 10.0  # how long attach waits for the device to be in the room
RPC_TIMEOUT_S = 5.0

L = TypeVar("L", bound="DeviceLink")


class DeviceError(Exception):
    """The device refused or could not answer a call; `code` is its RPC error code (2001, 2002, or the SDK's)."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method} failed ({code}): {message}")
        self.method = method
        self.code = code


class DeviceLink:
    """One agent session's link to one voice-device. Build it with `attach` (a subclass's `attach` builds that
    subclass: override `start_turn`, `end_turn`, `cancel_turn` to add to what they do)."""

    transcript_timeout_s = 10.0  # end_turn: how long the STT may take to finalise the user's turn

    def __init__(self, session: AgentSession[Any], room: rtc.Room, device: DeviceInfo, *,
                 end_when_away: bool = True) -> None:
        self.session = session
        self.room = room
        self.device = device
        self.end_when_away = end_when_away
        self.manual_turns = False
        self.ended = False
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- building it --------------------------------------------------------------------------------------------

    @classmethod
    async def attach(cls: type[L], session: AgentSession[Any], room: rtc.Room, *, device_identity: str | None = None,
                     wait_s: float = DEVICE_WAIT_S, end_when_away: bool = True) -> L:
        """Pair `session` with the device in `room` (connected: `await ctx.connect()` first). Call it before
        `session.start`. `device_identity` names the device where the room has several people in it."""
        if not room.isconnected():
            raise RuntimeError("voice_device_agent.attach needs a connected room: await ctx.connect() first")
        participant = await _find_device(room, device_identity, wait_s)
        device = (DeviceInfo.of(participant.identity, dict(participant.attributes)) if participant is not None
                  else DeviceInfo(identity=device_identity or ""))
        link = cls(session, room, device, end_when_away=end_when_away)
        link._register_turns()
        if device.push_to_talk:
            link._use_manual_turns()
        if device.mode is DeviceMode.WAKE_WORD:
            session.on("user_state_changed", link._user_state_changed)
        if device.speaks_protocol and not device.compatible:
            log.warning("%s; this companion speaks %s: only what both versions share is used", device.describe(),
                        PROTOCOL_VERSION)
        else:
            log.info("%s", device.describe())
        # not awaited: session.start must follow at once, its pre-connect audio handler registered before the
        # device's buffer can come (the device sends it once the agent is active, i.e. connected)
        link._spawn(room.local_participant.set_attributes({AgentAttribute.PROTOCOL.value: PROTOCOL_VERSION}),
                    "publishing voice_device.agent_protocol")
        return link

    def _spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        async def run() -> None:
            try:
                await work
            except Exception as e:
                log.warning("%s failed: %s", what, e)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _use_manual_turns(self) -> None:
        """Push-to-talk: the device says when a turn begins and ends; nothing is heard in between turns."""
        if not self.manual_turns:
            self.manual_turns = True
            self.session.update_options(turn_detection="manual")
            self.session.input.set_audio_enabled(False)

    def _register_turns(self) -> None:
        lp = self.room.local_participant
        lp.register_rpc_method(AgentMethod.START_TURN.value,
                               self._rpc(lambda data: self.start_turn(data.caller_identity)))
        lp.register_rpc_method(AgentMethod.END_TURN.value, self._rpc(lambda data: self.end_turn()))
        lp.register_rpc_method(AgentMethod.CANCEL_TURN.value, self._rpc(lambda data: self.cancel_turn()))

    def _rpc(self, turn: Callable[[rtc.RpcInvocationData], Awaitable[None]]
             ) -> Callable[[rtc.RpcInvocationData], Awaitable[str]]:
        async def handler(data: rtc.RpcInvocationData) -> str:
            if self.device.identity and data.caller_identity != self.device.identity:
                raise rtc.RpcError(int(RpcErrorCode.PERMISSION_DENIED), "only the session's device takes turns")
            await turn(data)
            return "ok"

        return handler

    # ---- push-to-talk turns (the device's RPCs) --------------------------------------------------------------

    async def start_turn(self, caller: str) -> None:
        """The user pressed: stop the agent, forget any half turn, listen to the caller."""
        self._use_manual_turns()
        try:
            self.session.interrupt()
        except RuntimeError as e:  # nothing to interrupt yet, or a speech that may not be interrupted
            log.debug("start_turn: not interrupted (%s)", e)
        self.session.clear_user_turn()
        self.session.room_io.set_participant(caller)
        self.session.input.set_audio_enabled(True)

    async def end_turn(self) -> None:
        """The user released: stop listening, the turn is complete, the agent answers."""
        self.session.input.set_audio_enabled(False)
        self.session.commit_user_turn(transcript_timeout=self.transcript_timeout_s)

    async def cancel_turn(self) -> None:
        """The turn was cancelled on the device: stop listening and drop it."""
        self.session.input.set_audio_enabled(False)
        self.session.clear_user_turn()

    # ---- the device's controls ---------------------------------------------------------------------------------

    async def call(self, method: DeviceMethod, payload: str = "") -> str:
        """One of the device's RPC methods; a refusal or a failure is a `DeviceError`."""
        if not self.device.identity:
            raise DeviceError(method.value, int(rtc.RpcError.ErrorCode.RECIPIENT_NOT_FOUND), "no device in the room")
        try:
            return await self.room.local_participant.perform_rpc(destination_identity=self.device.identity,
                                                                 method=method.value, payload=payload,
                                                                 response_timeout=RPC_TIMEOUT_S)
        except rtc.RpcError as e:
            raise DeviceError(method.value, e.code, e.message) from None

    async def set_volume(self, volume: float) -> float:
        """Set the device's speaker volume (0..1); returns the volume it applied."""
        return parse_volume_reply(await self.call(DeviceMethod.SET_VOLUME, volume_payload(volume)))

    async def get_status(self) -> dict[str, object]:
        """The device's status as an LLM may read it (`contract.status_summary`: no transcripts)."""
        return status_summary(await self.call(DeviceMethod.GET_STATUS), self.device)

    async def end_conversation(self) -> None:
        """End the conversation the way the device expects: once the agent has finished speaking, call
        `device.end_session` (the device then closes the room; a wake-word device listens for its wake word
        again). Calling it twice ends once. From inside a function tool, use the `end_conversation` tool instead
        (it waits for the playout the tool's way)."""
        speech = self.session.current_speech
        if speech is not None:
            await speech.wait_for_playout()
        await self._end_session()

    async def _end_session(self) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            await self.call(DeviceMethod.END_SESSION)
        except DeviceError as e:
            # the device ends the session at once: it may leave before its answer reaches the agent
            if e.code != rtc.RpcError.ErrorCode.RECIPIENT_DISCONNECTED:
                raise
        log.info("conversation ended on the device %s", self.device.identity)

    def _user_state_changed(self, ev: UserStateChangedEvent) -> None:
        if ev.new_state == "away" and self.end_when_away:
            self._spawn(self.end_conversation(), "ending the conversation (the user is away)")

    # ---- the LLM's tools -----------------------------------------------------------------------------------------

    def tools(self, allow: Iterable[str] = TOOLS) -> list[llm.Tool | llm.Toolset]:
        """The device's controls as function tools for the LLM (`Agent(tools=...)`): `set_volume`,
        `end_conversation`, `get_device_status`, or those of them named in `allow`. The device obeys only its
        session's agent; what it refuses reaches the LLM as a ToolError sentence."""
        wanted = set(allow)
        unknown = wanted - set(TOOLS)
        if unknown:
            raise ValueError(f"unknown device tools {sorted(unknown)}; the tools are {', '.join(TOOLS)}")
        made = {"set_volume": self._set_volume_tool, "end_conversation": self._end_conversation_tool,
                "get_device_status": self._get_status_tool}
        return [make() for name, make in made.items() if name in wanted]

    def _set_volume_tool(self) -> llm.Tool:
        async def set_volume(volume: float) -> str:
            """Set the speaker volume of the user's device.

            Args:
                volume: from 0.0 (silent) to 1.0 (loudest); 0.5 is half
            """
            try:
                applied = await self.set_volume(volume)
            except (DeviceError, ValueError) as e:
                raise ToolError(f"the volume was not changed: {e}") from None
            return f"The device's volume is now {round(applied * 100)} %."

        return function_tool(set_volume)

    def _end_conversation_tool(self) -> llm.Tool:
        async def end_conversation(context: RunContext[Any]) -> str:
            """End the conversation on the user's device, after what is being said has been played. Use it when
            the user says goodbye or asks to stop talking."""
            await context.wait_for_playout()  # what is said with the call (a goodbye) is heard first
            try:
                await self._end_session()
            except DeviceError as e:
                raise ToolError(f"the conversation could not be ended: {e}") from None
            return "The conversation is over."

        return function_tool(end_conversation)

    def _get_status_tool(self) -> llm.Tool:
        async def get_device_status() -> str:
            """Read the status of the user's device: whether it is muted, its session phase, its mode."""
            try:
                return json.dumps(await self.get_status())
            except (DeviceError, ValueError) as e:
                raise ToolError(f"the device's status could not be read: {e}") from None

        return function_tool(get_device_status)


async def _find_device(room: rtc.Room, identity: str | None, wait_s: float) -> rtc.RemoteParticipant | None:
    """The device: the participant named `identity`, else the first that publishes the protocol, else the first
    that is not an agent (an older device); waits up to `wait_s` for one to be there, None when nobody came."""
    deadline = time.monotonic() + wait_s
    while True:
        people = [p for p in room.remote_participants.values()
                  if p.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
                  and (identity is None or p.identity == identity)]
        if people:
            speaking = [p for p in people if DeviceInfo.of(p.identity, dict(p.attributes)).speaks_protocol]
            return (speaking or people)[0]
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.05)


attach = DeviceLink.attach
