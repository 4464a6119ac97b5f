"""The session supervisor: the async adapter around the pure `Policy`, the only code that drives a LiveKit Room.

It decides nothing a policy could: every public call and every room callback becomes a typed item on one inbox at
the boundary (a policy `Input`, or one of the few room events that carry SDK objects: `Published`,
`TrackSubscribed`, `LocalTrackSubscribed`, `MicRepublished`, `LinkReconnecting`, `LinkReconnected`, `MuteSet`, a
timer's `Fired`). One worker task reads the inbox — items from a connect attempt carry its number and are dropped
once it is not the current one — feeds the policy, and carries out each `Action` in order. The agent's
`lk.agent.session` messages are read in order and decoded at the boundary (`agent_session.SessionStreams`) into
`AgentSpoke` inputs; an answer to the device's own request is matched there first (`SessionRequests`). The
connect attempts themselves (token, `Room.connect`, publish, disposal) are `attempt.Connector`'s.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from device.config.schema import Config
from device.core.timers import Fired, NamedTimers
from device.core.vocabulary import (
    AgentState,
    EndReason,
    Event,
    SessionEnded,
    SessionEvent,
    SessionFailed,
    SessionReconnecting,
)
from device.session import device_rpc, sdklog
from device.session.agent import (
    AGENT_NAME_ATTR,
    AGENT_STATE_ATTR,
    agent_protocol,
    disconnect_reason_name,
    is_active,
    is_agent,
    is_session_agent,
    protocol_sentence,
    speaks_for,
)
from device.session.agent_audio import STREAM_FRAME_MS, VoiceGate
from device.session.agent_session import TOPIC as SESSION_TOPIC
from device.session.agent_session import AgentProtocol, Answer, News, Role, SessionRequests, SessionStreams
from device.session.attempt import Attempt, Connector, Published
from device.session.clock import Clock, LoopClock
from device.session.media import Media, RtcMedia
from device.session.policy import (
    Action,
    AgentAttributesChanged,
    AgentLeft,
    AgentSeen,
    AgentSpoke,
    Arm,
    AskAgentState,
    Begin,
    Cancel,
    CloseSession,
    Connect,
    ConnectSucceeded,
    Disconnected,
    DropBuffer,
    Emit,
    FlushTurns,
    FollowAgent,
    Input,
    Interrupt,
    KeepTranscript,
    OpenSession,
    Phase,
    Policy,
    PressAnswered,
    PressMade,
    QueueTurn,
    RoomReconnected,
    RoomReconnecting,
    Stop,
    StopPlayback,
    TakeAgent,
    Teardown,
    TimerDue,
    TimerName,
    TurnAsked,
    TurnKind,
    TurnOpened,
    UserAway,
    UserSpeech,
)
from device.session.ports import AudioPort
from device.session.status import (
    PRESS_LATENCIES_KEPT,
    AgentStatus,
    FailureStatus,
    SessionMetrics,
    SessionStatus,
    TranscriptLine,
    TurnsStatus,
)
from device.session.text import AGENT_EVENTS_TOPIC, CHAT_TOPIC, TRANSCRIPTION_TOPIC, AgentEvents, Transcripts
from device.session.tokens import TokenCache, TokenSource, make_token_source
from device.session.turns import Turns
from device.session.uplink.uplink import Uplink
from device.session.uplink.user_speech import EnergyGate, SpeechGate, VadGate

if TYPE_CHECKING:
    from livekit import rtc

log = logging.getLogger("device.session.supervisor")


class SessionError(Exception):
    """A call the session cannot serve right now; `str()` says what to do."""


# ---- the room events that carry SDK objects (the rest of the room's callbacks become policy inputs) ------------


@dataclass(frozen=True)
class TrackSubscribed:
    attempt: Attempt
    track: rtc.Track
    participant: rtc.Participant


@dataclass(frozen=True)
class LocalTrackSubscribed:
    sid: str


@dataclass(frozen=True)
class MicRepublished:
    attempt: Attempt
    publication: rtc.LocalTrackPublication
    previous_sid: str


@dataclass(frozen=True)
class LinkReconnecting:
    """The room is reconnecting: the uplink holds its audio, then the policy hears `RoomReconnecting`."""


@dataclass(frozen=True)
class LinkReconnected:
    pass


@dataclass(frozen=True)
class MuteSet:
    muted: bool


RoomEvent = TrackSubscribed | LocalTrackSubscribed | MicRepublished | LinkReconnecting | LinkReconnected
Item = Input | RoomEvent | Published | MuteSet | Fired[TimerName]


@dataclass
class _Tally:
    """The counters behind `SessionMetrics`, over this supervisor's life."""

    sessions: int = 0
    reconnects: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    preconnect_bytes_sent: int = 0
    press_to_listening_ms: int | None = None
    press_to_listening: list[int] = field(default_factory=list)  # every press, bounded (recent())

    def heard(self, ms: int) -> None:
        self.press_to_listening_ms = ms
        self.press_to_listening.append(ms)
        del self.press_to_listening[:-PRESS_LATENCIES_KEPT]


def turns_status(turns: Turns) -> TurnsStatus:
    return TurnsStatus(rpc=turns.active, fallback=turns.enabled and not turns.supported)


class Supervisor:
    def __init__(
        self,
        config: Config,
        audio: AudioPort,
        emit: Callable[[Event], None],
        *,
        room_factory: Callable[[], rtc.Room] | None = None,
        token_source: TokenSource | None = None,
        clock: Clock | None = None,
        media: Media | None = None,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
        identity: str | None = None,
        muted: bool = False,
        on_session_over: Callable[[], None] | None = None,
    ):
        sdklog.install()  # the SDK's own reports of a failed connect would repeat ours
        self._cfg = config
        self._lk = config.livekit
        self._sc = config.session
        self._audio = audio
        self._emit_cb = emit
        self._clock = clock or LoopClock()
        self._media = media or RtcMedia()
        self._policy = Policy(config.session, rng=rng, follow_up_s=config.wake_word.follow_up_s)
        self._turns = Turns(config.session.turns, enabled=config.session.profile.turns,
                            on_start_pending=self._turn_start_pending)
        self._transcripts = Transcripts(log_them=config.logging.transcripts,
                                        streamed=lambda: self._policy.agent_protocol is not AgentProtocol.SESSION)
        self._session_streams = SessionStreams(self._session_message, self._clock)
        self._requests = SessionRequests(self._clock)
        self._asks: set[asyncio.Task[bool]] = set()
        self._agent_events = AgentEvents(lambda identity: self._post(None, UserAway(identity)))
        self._connector = Connector(
            config,
            tokens=TokenCache(token_source or make_token_source(config.livekit), wall=wall),
            room_factory=room_factory or _rtc_room,
            media=self._media,
            clock=self._clock,
            sample_rate=audio.sample_rate,
            identity=identity,
            post=self._post,
            prepare=self._prepare_room,
            joined=self._joined_room,
            muted=lambda: self._muted,
        )
        self._on_session_over = on_session_over
        self._uplink: Uplink | None = None
        self._uplink_task: asyncio.Task[None] | None = None
        self._passed_over: set[str] = set()  # agents of the room that are not the session's (logged once)
        self._protocol_noted: tuple[str, str | None] | None = None  # the agent's protocol, as last logged
        self._first_ready: tuple[str, AgentState] | None = None  # the agent's first ready state, while it says none
        self._muted = muted
        self._press_t: float | None = None
        self._timers: NamedTimers[TimerName] = NamedTimers(self._clock.call_later, self._timer_fired)
        self._inbox: asyncio.Queue[tuple[int | None, Item, asyncio.Future[None] | None]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._turn_task: asyncio.Task[None] | None = None
        self._closed = False
        self._tally = _Tally()
        self.last_failure: SessionFailed | None = None

    # ---- public API ------------------------------------------------------------------------------------------

    async def start(self, mark: int, *, session: int = 0, listen_from: int | None = None) -> None:
        """Start a session whose audio begins at ring index `mark` (already includes the pre-roll); its events
        carry `session`; the user's speech counts from `listen_from` (default: the mark)."""
        if self._closed:
            raise SessionError("the session supervisor is closed")
        await self._submit(Begin(mark, session, listen_from))

    async def end(self, reason: str = EndReason.REQUESTED) -> None:
        await self._submit(Stop(reason))

    async def start_turn(self, mark: int, *, session: int = 0) -> None:
        """A press in push-to-talk: start a session if none runs (from ring index `mark`, the caller's: the daemon
        takes it at the press), then the agent's start_turn (barge-in while it speaks)."""
        if self._policy.phase is Phase.IDLE:
            await self.start(mark, session=session)
        await self._submit(TurnAsked(TurnKind.START, turn_calls=self._turns.active))

    async def end_turn(self) -> None:
        await self._submit(TurnAsked(TurnKind.END, turn_calls=self._turns.active))

    async def cancel_turn(self) -> None:
        await self._submit(TurnAsked(TurnKind.CANCEL, turn_calls=self._turns.active))

    async def set_muted(self, muted: bool) -> None:
        await self._submit(MuteSet(muted))

    async def interrupt(self) -> None:
        """Barge-in without turns: drop the agent's audio until it stops speaking (the daemon has flushed the
        player); the mic goes on live, so the agent hears the user and stops."""
        await self._submit(Interrupt())

    async def send_text(self, text: str) -> None:
        """Send typed text to the agent on `lk.chat`."""
        att = self._connector.current
        room = att.published_room if att is not None else None
        if room is None or self._policy.phase is not Phase.CONNECTED:
            raise SessionError("no session is connected; start one first (press the button or `voice-device start`)")
        await room.local_participant.send_text(text, topic=CHAT_TOPIC)
        log.info("text sent topic=%s chars=%d", CHAT_TOPIC, len(text))

    def status(self) -> SessionStatus:
        att = self._connector.current
        uplink = self._uplink
        t = self._tally
        return SessionStatus(
            phase=str(self._policy.phase),
            room=att.room_name if att else None,
            identity=att.identity if att else None,
            agent=AgentStatus(self._policy.agent, self._policy.agent_state, self._agent_protocol()),
            agent_protocol=self._policy.agent_protocol if self._policy.agent is not None else None,
            muted=self._muted,
            turns=turns_status(self._turns),
            transcripts=tuple(TranscriptLine(x.speaker, x.text) for x in self._transcripts.last),
            preconnect=uplink.snapshot() if uplink else None,
            last_failure=FailureStatus.of(self.last_failure) if self.last_failure else None,
            metrics=SessionMetrics(
                sessions=t.sessions,
                reconnects=t.reconnects,
                failures=MappingProxyType(dict(t.failures)),
                preconnect_bytes_sent=t.preconnect_bytes_sent + (uplink.bytes_sent if uplink else 0),
                press_to_listening_ms=t.press_to_listening_ms,
                press_to_listening_recent_ms=tuple(t.press_to_listening),
            ),
        )

    async def refresh(self) -> None:
        """`status()` is always current in this process (a session process's proxy fetches it here)."""

    async def wait_quiet(self) -> None:
        """Return once everything posted so far has been handled (connect attempts may still be running)."""
        await self._inbox.join()

    async def aclose(self) -> None:
        if self._closed:
            return
        if self._worker is not None:
            await self.end(EndReason.SHUTDOWN)
            # abandoned connects finish on their own deadline, then disconnect: wait for that before exit
            await asyncio.gather(*self._connector.tasks(), return_exceptions=True)
            await self.wait_quiet()
        self._closed = True
        self._timers.close()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        await self._transcripts.aclose()
        await self._agent_events.aclose()
        await self._session_streams.aclose()
        for task in list(self._asks):
            task.cancel()
        await asyncio.gather(*self._asks, return_exceptions=True)

    # ---- the worker ------------------------------------------------------------------------------------------

    async def _submit(self, item: Item) -> None:
        self._ensure_worker()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait((None, item, done))
        await done

    def _post(self, attempt_id: int | None, item: Item) -> None:
        if not self._closed:
            self._inbox.put_nowait((attempt_id, item, None))

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        while True:
            attempt_id, item, done = await self._inbox.get()
            try:
                att = self._connector.current
                if attempt_id is None or (att is not None and att.id == attempt_id):
                    await self._process(item)
            except Exception:
                log.exception("session worker error item=%r", item)
            finally:
                if done is not None and not done.done():
                    done.set_result(None)
                self._inbox.task_done()

    async def _process(self, item: Item) -> None:
        match item:
            case Input():
                await self._feed(item)
            case Fired():
                if self._timers.take(item):
                    await self._feed(TimerDue(item.name))
            case MuteSet(muted):
                self._set_muted(muted)
            case Published(att):
                await self._published(att)
            case _:
                for inp in self._room_event(item):
                    await self._feed(inp)

    async def _feed(self, inp: Input) -> None:
        for action in self._policy.handle(inp):
            await self._do(action)

    async def _do(self, action: Action) -> None:
        match action:
            case Emit(event):
                self._publish(event)
            case Connect(fresh, new_room):
                self._connector.connect(fresh=fresh, new_room=new_room)
            case Teardown(reason, keep_buffering):
                await self._teardown(reason, keep_buffering)
            case Arm(name, delay):
                self._timers.arm(name, delay)
            case Cancel(name):
                self._timers.cancel(name)
            case DropBuffer(reason):
                if self._uplink is not None:
                    self._uplink.drop_buffer(reason)
            case OpenSession(mark, listen_from):
                self._open_session(mark, listen_from)
            case CloseSession():
                await self._close_session()
            case PressMade():
                self._press_t = self._clock.now()
            case PressAnswered():
                if self._press_t is not None:
                    self._tally.heard(round((self._clock.now() - self._press_t) * 1000))
                    self._press_t = None
            case TakeAgent(identity, name):
                self._turns.new_agent()
                log.info("agent joined identity=%s name=%s", identity, name)
            case FollowAgent(identity):
                if self._uplink is not None:
                    self._uplink.set_agent(identity)
            case AskAgentState(agent):
                self._ask_agent_state(agent)
            case KeepTranscript(role, text):
                self._keep_turn(role, text)
            case StopPlayback():
                self._audio.player.flush()
            case QueueTurn(kind):
                self._turns.queue(kind)
            case FlushTurns(agent):
                self._flush_turns(agent)
            case _:
                raise TypeError(f"not an action of the session policy: {action!r}")

    # ---- carrying out the actions ----------------------------------------------------------------------------

    def _open_session(self, mark: int, listen_from: int) -> None:
        self._tally.sessions += 1
        self._uplink = Uplink(
            self._audio.reader(mark),
            sample_rate=self._audio.sample_rate,
            clock=self._clock,
            preconnect=self._sc.preconnect,
            max_buffer_s=self._sc.preconnect_max_s,
            resend_s=self._sc.resend_after_reconnect_s,
            speech=self._speech_gate(listen_from),
            on_speech=lambda: self._post(None, UserSpeech()),
            start=mark,
        )
        self._uplink.set_muted(self._muted)
        self._uplink_task = asyncio.get_running_loop().create_task(self._uplink.run())
        self._turns.reset()

    def _speech_gate(self, listen_from: int) -> SpeechGate:
        """A voice activity detector where the follow-up window depends on it, the energy gate elsewhere."""
        if self._sc.profile.follow_up:
            return VadGate(self._audio.sample_rate, self._cfg.wake_word.vad_threshold, from_index=listen_from)
        return EnergyGate(self._sc.speech_threshold_dbfs)

    async def _close_session(self) -> None:
        uplink, task = self._uplink, self._uplink_task
        if uplink is None:
            return
        self._uplink = self._uplink_task = None
        await uplink.aclose()
        self._tally.preconnect_bytes_sent += uplink.bytes_sent
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._turns.reset()
        self._connector.forget_room()
        if self._on_session_over is not None:
            self._on_session_over()

    async def _teardown(self, reason: str, keep_buffering: bool) -> None:
        att = self._connector.release()
        self._passed_over.clear()
        if self._uplink is not None:
            await self._uplink.detach(keep_buffering=keep_buffering, reason=reason)  # closes the pre-connect writer
        if att is not None:
            await self._connector.abandon(att, reason)

    def _flush_turns(self, agent: str) -> None:
        att = self._connector.current
        room = att.published_room if att is not None else None
        if not self._turns.pending or room is None:
            return
        if self._turn_task is None or self._turn_task.done():
            before_end = self._uplink.stream_delivered if self._uplink is not None else None
            self._turn_task = asyncio.get_running_loop().create_task(
                self._turns.flush(room.local_participant, agent, before_end))

    def _ask_agent_state(self, agent: str) -> None:
        """`get_session_state` in the background: the session never waits for it (its answer is an `AgentSpoke`)."""
        att = self._connector.current
        room = att.published_room if att is not None else None
        if room is None:
            return
        task = asyncio.get_running_loop().create_task(self._requests.ask_state(room.local_participant, agent))
        self._asks.add(task)
        task.add_done_callback(self._asks.discard)

    def _keep_turn(self, role: Role, text: str) -> None:
        """The user's turn under the identity the device has in the room (a literal token's, not the one asked)."""
        att = self._connector.current
        user = att.room.local_participant.identity if att is not None and att.room is not None else "user"
        self._transcripts.keep_turn(user if role is Role.USER else self._policy.agent or "agent", text)

    def _session_message(self, attempt_id: int, identity: str, message: News | Answer) -> None:
        """A message on `lk.agent.session`, read in order: an answer to a request of ours goes the way of the
        events (an answer to anyone else's is not ours to read)."""
        if isinstance(message, Answer):
            if not self._requests.answered(identity, message) or message.news is None:
                return
            message = message.news
        self._post(attempt_id, AgentSpoke(identity, message))

    def _turn_start_pending(self, pending: bool) -> None:
        if self._uplink is not None:
            self._uplink.set_turn_pending(pending)
        if not pending:
            self._post(None, TurnOpened())

    def _set_muted(self, muted: bool) -> None:
        self._muted = muted
        if self._uplink is not None:
            self._uplink.set_muted(muted)
        att = self._connector.current
        if att is not None and att.track is not None:
            att.track.mute() if muted else att.track.unmute()
        log.info("mic muted=%s", muted)

    def _set_volume(self, volume: float) -> float:
        self._audio.player.volume = volume
        return volume

    def _timer_fired(self, fired: Fired[TimerName]) -> None:
        self._post(None, fired)

    def _publish(self, event: Event) -> None:
        if isinstance(event, SessionEvent):
            event = replace(event, session=self._policy.session)
        if isinstance(event, SessionFailed):
            self._tally.failures[str(event.reason)] += 1
            self.last_failure = event
            retry = f"{event.retry_in_s:.1f}" if event.retry_in_s is not None else "never"
            log.warning("session failed reason=%s retry_in_s=%s detail=%s message=%r", event.reason, retry,
                        event.detail, event.reason.message)
        elif isinstance(event, SessionEnded):
            log.info("session ended reason=%s", event.reason)
        elif isinstance(event, SessionReconnecting):
            self._tally.reconnects += 1
            log.info("session reconnecting")
        try:
            self._emit_cb(event)
        except Exception:
            log.exception("event consumer failed event=%r", event)

    # ---- the room: its callbacks become typed items (registered before connect, tagged with the attempt) -------

    def _prepare_room(self, att: Attempt, room: rtc.Room) -> None:
        def post(item: Item) -> None:
            self._post(att.id, item)

        def seen(participant: rtc.Participant) -> None:
            if (inp := self._agent_seen(participant)) is not None:
                post(inp)

        def attributes_changed(changed: dict[str, str], participant: rtc.Participant) -> None:
            if (inp := self._agent_seen(participant)) is not None:
                post(AgentAttributesChanged(inp, state_changed=AGENT_STATE_ATTR in changed))

        def left(participant: rtc.RemoteParticipant) -> None:
            reason = disconnect_reason_name(participant.disconnect_reason)
            post(AgentLeft(participant.identity, deliberate=reason == "CLIENT_INITIATED"))

        room.on("participant_connected", seen)
        room.on("participant_active", seen)
        room.on("participant_attributes_changed", attributes_changed)
        room.on("participant_disconnected", left)
        room.on("track_subscribed", lambda track, pub, participant: post(TrackSubscribed(att, track, participant)))
        room.on("local_track_subscribed", lambda track: post(LocalTrackSubscribed(track.sid)))
        room.on("local_track_republished", lambda pub, previous_sid: post(MicRepublished(att, pub, previous_sid)))
        room.on("token_refreshed", lambda *_: log.info("token refreshed by the server"))  # used for reconnects
        room.on("reconnecting", lambda: post(LinkReconnecting()))
        room.on("reconnected", lambda: post(LinkReconnected()))
        room.on("disconnected", lambda reason: post(Disconnected(disconnect_reason_name(reason))))
        room.register_text_stream_handler(TRANSCRIPTION_TOPIC, self._transcripts.handler)
        room.register_text_stream_handler(AGENT_EVENTS_TOPIC, self._agent_events.handler)
        room.register_byte_stream_handler(SESSION_TOPIC, self._session_streams.handler(att.id))

    def _joined_room(self, att: Attempt, lp: rtc.LocalParticipant) -> None:
        device_rpc.register(lp, may_command=lambda caller: self._may_command(att, caller),
                            set_volume=self._set_volume, request_end=lambda reason: self._post(None, Stop(reason)),
                            get_status=self.status)

    def _agent_seen(self, participant: rtc.Participant) -> AgentSeen | None:
        """The facts about a participant the policy may take for the session's agent; None for anyone else."""
        if not is_session_agent(participant, self._lk.agent_name):
            if is_agent(participant) and participant.identity not in self._passed_over:
                self._passed_over.add(participant.identity)
                log.info("agent passed over identity=%s name=%s: the device dispatches %s", participant.identity,
                         participant.attributes.get(AGENT_NAME_ATTR, ""), self._lk.agent_name)
            return None
        raw = participant.attributes.get(AGENT_STATE_ATTR)
        state = AgentState.of(raw) if raw else None
        if raw and state is None:
            log.debug("agent state ignored state=%s", raw)
        if state is not None and state.ready:
            self._note_protocol(participant, state)
        return AgentSeen(participant.identity, participant.attributes.get(AGENT_NAME_ATTR, ""),
                         is_active(participant), state)

    def _note_protocol(self, participant: rtc.Participant, state: AgentState) -> None:
        """One log line saying which voice-device protocol the ready agent speaks (again if it changes). An agent
        that speaks one says so just after it has started (its first state), so "none" waits for its next state."""
        noted = (participant.identity, agent_protocol(participant))
        if noted == self._protocol_noted:
            return
        if noted[1] is None:
            if self._first_ready is None or self._first_ready[0] != participant.identity:
                self._first_ready = (participant.identity, state)
                return
            if self._first_ready[1] is state:
                return
        self._protocol_noted = noted
        log.info(protocol_sentence(*noted))

    def _agent_protocol(self) -> str | None:
        att, agent = self._connector.current, self._policy.agent
        participant = att.room.remote_participants.get(agent) if att and att.room and agent else None
        return agent_protocol(participant) if participant is not None else None

    def _may_command(self, att: Attempt, caller: str) -> bool:
        """Whether `caller` is the session's agent, the only participant the device's RPC methods serve.

        Called from the SDK's RPC handlers, outside the worker: an agent's call can outrun the worker's handling
        of its join (an agent already in the room is only looked at once the mic is published), so until the
        policy has chosen an agent, the room is asked by the same rule, in the order `Published` reads it."""
        if self._connector.current is not att or att.room is None:
            return False
        if self._policy.agent is not None:
            return caller == self._policy.agent
        first = next((p for p in list(att.room.remote_participants.values())
                      if is_session_agent(p, self._lk.agent_name)), None)
        return first is not None and first.identity == caller

    def _room_event(self, event: RoomEvent) -> list[Input]:
        """Carry out a room event on the uplink and the player; what it means to the session, as policy inputs."""
        match event:
            case TrackSubscribed(att, track, participant):
                self._maybe_play(att, track, participant)
            case LocalTrackSubscribed(sid):
                if self._uplink is not None:
                    self._uplink.track_subscribed(sid)
            case MicRepublished(att, publication, previous_sid):
                log.info("mic republished previous=%s track=%s", previous_sid, publication.sid)
                att.publication = publication
                if self._uplink is not None:
                    self._uplink.republished(publication.sid)
            case LinkReconnecting():
                if self._uplink is not None:
                    current = self._connector.current
                    self._uplink.reconnecting(unheard_since=current.link.last_heard if current is not None else None)
                return [RoomReconnecting()]
            case LinkReconnected():
                if self._uplink is not None:
                    self._uplink.reconnected()
                return [RoomReconnected()]
        return []

    async def _published(self, att: Attempt) -> None:
        room, source, publication = att.room, att.source, att.publication
        assert room is not None and source is not None and publication is not None, "posted after publish_track"
        log.info("session connected room=%s track=%s", att.room_name, publication.sid)
        if self._uplink is not None:
            self._uplink.attach(room.local_participant, source, publication.sid)
        await self._feed(ConnectSucceeded())
        # an agent already in the room fires no participant_active: look at who is here
        for p in list(room.remote_participants.values()):
            if (seen := self._agent_seen(p)) is not None:
                await self._feed(seen)
        if self._connector.current is not att:
            return
        for p in list(room.remote_participants.values()):
            for pub in list(p.track_publications.values()):
                if pub.track is not None:
                    self._maybe_play(att, pub.track, p)

    def _maybe_play(self, att: Attempt, track: rtc.Track, participant: rtc.Participant) -> None:
        from livekit import rtc

        if rtc.TrackKind.Name(track.kind) != "KIND_AUDIO" or not speaks_for(participant, self._policy.agent):
            return
        if track.sid in att.playback:
            return
        stream = self._media.audio_stream(track, self._audio.sample_rate, STREAM_FRAME_MS)
        task = asyncio.get_running_loop().create_task(self._play(stream))
        att.playback[track.sid] = (task, stream)
        log.info("playing agent audio participant=%s track=%s", participant.identity, track.sid)

    async def _play(self, stream: rtc.AudioStream) -> None:
        import numpy as np

        gate = VoiceGate()
        player = self._audio.player
        async for event in stream:
            if self._policy.barging:
                continue  # interrupted: dropped until the agent stops speaking (the player was flushed)
            frame = event.frame
            if gate.admit(np.frombuffer(frame.data, dtype=np.int16), frame.duration):
                player.push(frame)
            elif gate.ended():
                player.end()


def _rtc_room() -> rtc.Room:
    from livekit import rtc

    return rtc.Room()
