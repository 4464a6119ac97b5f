"""The session supervisor: the async shell around the pure `Policy`, the only code that drives a LiveKit Room.

One worker task reads one inbox: public calls (start, end, turns), room callbacks (tagged with the connect
attempt that produced them; stale ones are dropped) and timers (armed on the injectable clock) all become
policy inputs there, and the policy's actions are carried out in order. Connect attempts run in their own
tasks so an `end()` during a connect or a reconnect is handled at once.

Teardown order matters (livekit-facts): close the pre-connect writer, `aclose()` the AudioSource, then
disconnect — an unclosed source while the SDK is reconnecting can abort the process natively.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from device.config.schema import Config
from device.core.timers import Fired, NamedTimers
from device.core.vocabulary import (
    AgentState,
    EndReason,
    Event,
    FailureReason,
    SessionEnded,
    SessionEvent,
    SessionFailed,
    SessionReconnecting,
)
from device.session import device_rpc, sdklog
from device.session.agent import (
    AGENT_NAME_ATTR,
    AGENT_STATE_ATTR,
    disconnect_reason_name,
    is_active,
    is_agent,
    is_session_agent,
    speaks_for,
)
from device.session.classify import classify_connect_error
from device.session.clock import Clock, LoopClock, within
from device.session.media import Media, RtcMedia
from device.session.policy import (
    Action,
    AgentJoined,
    AgentLeft,
    AgentStateReported,
    Arm,
    Cancel,
    Connect,
    ConnectFailed,
    ConnectSucceeded,
    Disconnected,
    DropBuffer,
    Emit,
    Input,
    Phase,
    Policy,
    RoomReconnected,
    RoomReconnecting,
    Start,
    Stop,
    Teardown,
    TimerDue,
    TimerName,
    TurnBegan,
    TurnFinished,
    UserAway,
    UserSpeech,
)
from device.session.ports import AudioPort
from device.session.preconnect import Uplink
from device.session.speech import EnergyGate, SpeechGate, VadGate
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
from device.session.tokens import TokenCache, TokenError, TokenRequest, TokenSource, build_request, make_token_source
from device.session.turns import Turns
from device.session.voice import STREAM_FRAME_MS, VoiceGate

if TYPE_CHECKING:
    from livekit import rtc

    # What the worker's inbox carries: a policy input, or a step to run on the worker (a call, a room callback),
    # which returns the inputs it produced (or an awaitable of them).
    Step = Callable[[], list[Input] | Awaitable[list[Input] | None] | None]
    Item = Input | Step

log = logging.getLogger("device.session.supervisor")

DISCONNECT_TIMEOUT_S = 5.0


class SessionError(Exception):
    """A call the session cannot serve right now; `str()` says what to do."""


@dataclass
class Attempt:
    """One token fetch + Room.connect + publish, and everything it owns."""

    id: int
    request: TokenRequest
    fresh: bool
    room: rtc.Room | None = None
    source: rtc.AudioSource | None = None
    track: rtc.LocalAudioTrack | None = None
    publication: rtc.LocalTrackPublication | None = None
    task: asyncio.Task[None] | None = None
    in_room_connect: bool = False
    abandoned: bool = False
    disposed: bool = False
    playback: dict[str, tuple[asyncio.Task[None], rtc.AudioStream]] = field(default_factory=dict)

    def is_abandoned(self) -> bool:
        return self.abandoned


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
        self._room_factory = room_factory or _rtc_room
        self._tokens = TokenCache(token_source or make_token_source(config.livekit), wall=wall)
        self._clock = clock or LoopClock()
        self._media = media or RtcMedia()
        self._policy = Policy(config.session, rng=rng, follow_up_s=config.wake_word.follow_up_s)
        self._turns = Turns(config.session.turns, enabled=config.session.profile.turns,
                            on_start_pending=self._turn_start_pending)
        self._transcripts = Transcripts(log_them=config.logging.transcripts)
        self._agent_events = AgentEvents(self._user_away)
        self._barging = False  # interrupted: the agent's audio is dropped until it stops speaking
        self._identity: str | None = identity  # one identity for the daemon's life (built at the first connect)
        self._on_session_over = on_session_over
        self._request: TokenRequest | None = None
        self._attempt: Attempt | None = None
        self._attempt_seq = 0
        self._old_attempts: set[asyncio.Task[None]] = set()
        self._uplink: Uplink | None = None
        self._uplink_task: asyncio.Task[None] | None = None
        self._agent: str | None = None  # the session's agent (is_session_agent): the one it follows and obeys
        self._passed_over: set[str] = set()  # agents of the room that are not the session's (logged once)
        self._muted = muted
        self._press_t: float | None = None
        self._timers: NamedTimers[TimerName] = NamedTimers(self._clock.call_later, self._timer_fired)
        self._inbox: asyncio.Queue[tuple[int | None, Item, asyncio.Future[None] | None]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._turn_task: asyncio.Task[None] | None = None
        self._closed = False
        self._session = 0  # the device machine's number of the running (or last) session
        self._tally = _Tally()
        self.last_failure: SessionFailed | None = None

    # ---- public API ------------------------------------------------------------------------------------------

    async def start(self, mark: int, *, session: int = 0, listen_from: int | None = None) -> None:
        """Start a session whose audio begins at ring index `mark` (already includes the pre-roll); its events
        carry `session`; the user's speech counts from `listen_from` (default: the mark)."""
        if self._closed:
            raise SessionError("the session supervisor is closed")
        await self._submit(functools.partial(self._begin, mark, session, listen_from))

    async def end(self, reason: str = EndReason.REQUESTED) -> None:
        await self._submit(Stop(reason))

    async def start_turn(self, mark: int | None = None, *, session: int = 0) -> None:
        """A press in push-to-talk: start a session if none runs, then the agent's start_turn (barge-in while it
        speaks)."""
        if self._policy.phase is Phase.IDLE:
            await self.start(mark if mark is not None else self._audio.mark(self._cfg.audio.preroll_ms),
                             session=session)
        await self._submit(functools.partial(self._turn, "start"))

    async def end_turn(self) -> None:
        await self._submit(functools.partial(self._turn, "end"))

    async def cancel_turn(self) -> None:
        await self._submit(functools.partial(self._turn, "cancel"))

    async def set_muted(self, muted: bool) -> None:
        await self._submit(functools.partial(self._set_muted, muted))

    async def interrupt(self) -> None:
        """Barge-in without turns: drop the agent's audio until it stops speaking (the daemon has flushed the
        player); the mic goes on live, so the agent hears the user and stops."""
        await self._submit(self._interrupt)

    async def send_text(self, text: str) -> None:
        """Send typed text to the agent on `lk.chat`."""
        att = self._attempt
        room = att.room if att is not None and att.publication is not None else None
        if room is None or self._policy.phase is not Phase.CONNECTED:
            raise SessionError("no session is connected; start one first (press the button or `voice-device start`)")
        await room.local_participant.send_text(text, topic=CHAT_TOPIC)
        log.info("text sent topic=%s chars=%d", CHAT_TOPIC, len(text))

    def status(self) -> SessionStatus:
        att = self._attempt
        uplink = self._uplink
        t = self._tally
        return SessionStatus(
            phase=str(self._policy.phase),
            room=att.request.room_name if att else None,
            identity=att.request.participant_identity if att else None,
            agent=AgentStatus(self._agent, self._policy.agent_state),
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
            await asyncio.gather(*self._attempt_tasks(), return_exceptions=True)
            await self.wait_quiet()
        self._closed = True
        self._timers.close()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        await self._transcripts.aclose()
        await self._agent_events.aclose()

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
                if attempt_id is None or (self._attempt is not None and self._attempt.id == attempt_id):
                    await self._process(item)
            except Exception:
                log.exception("session worker error item=%r", item)
            finally:
                if done is not None and not done.done():
                    done.set_result(None)
                self._inbox.task_done()

    async def _process(self, item: Item) -> None:
        if isinstance(item, Input):
            inputs = [item]
        else:
            result = item()
            if inspect.isawaitable(result):
                result = await result
            inputs = result or []
        for inp in inputs:
            await self._feed(inp)
        if self._policy.phase is Phase.IDLE and self._uplink is not None:
            await self._close_session()
            if self._on_session_over is not None:
                self._on_session_over()

    async def _feed(self, inp: Input) -> None:
        for action in self._policy.handle(inp):
            await self._do(action)

    async def _do(self, action: Action) -> None:
        match action:
            case Emit(event):
                self._publish(event)
            case Connect(fresh, new_room):
                self._connect(fresh=fresh, new_room=new_room)
            case Teardown(reason):
                await self._teardown(reason)
            case Arm(name, delay):
                self._timers.arm(name, delay)
            case Cancel(name):
                self._timers.cancel(name)
            case DropBuffer(reason):
                if self._uplink is not None:
                    self._uplink.drop_buffer(reason)

    # ---- session and attempts --------------------------------------------------------------------------------

    def _begin(self, mark: int, session: int, listen_from: int | None = None) -> list[Input]:
        self._session = session  # a start while one runs (e.g. waiting to retry) makes it the session asked for
        if self._policy.phase is not Phase.IDLE:
            log.info("start ignored: a session is already %s", self._policy.phase)
            return []
        self._tally.sessions += 1
        self._press_t = self._clock.now()
        self._uplink = Uplink(
            self._audio.reader(mark),
            sample_rate=self._audio.sample_rate,
            clock=self._clock,
            preconnect=self._sc.preconnect,
            max_buffer_s=self._sc.preconnect_max_s,
            resend_s=self._sc.resend_after_reconnect_s,
            speech=self._speech_gate(mark if listen_from is None else listen_from),
            on_speech=lambda: self._post(None, UserSpeech()),
            start=mark,
        )
        self._uplink.set_muted(self._muted)
        self._uplink_task = asyncio.get_running_loop().create_task(self._uplink.run())
        self._turns.reset()
        return [Start()]

    def _speech_gate(self, listen_from: int) -> SpeechGate:
        """A voice activity detector where the follow-up window depends on it, the energy gate elsewhere."""
        if self._sc.profile.follow_up:
            return VadGate(self._audio.sample_rate, self._cfg.wake_word.vad_threshold, from_index=listen_from)
        return EnergyGate(self._sc.speech_threshold_dbfs)

    async def _close_session(self) -> None:
        uplink, task = self._uplink, self._uplink_task
        self._uplink = self._uplink_task = None
        if uplink is not None:
            await uplink.aclose()
            self._tally.preconnect_bytes_sent += uplink.bytes_sent
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._turns.reset()
        self._request = None
        self._barging = False

    def _connect(self, *, fresh: bool, new_room: bool) -> None:
        if self._identity is None:
            self._identity = build_request(self._lk).participant_identity
        if new_room or self._request is None:
            self._request = build_request(self._lk, identity=self._identity)
        self._attempt_seq += 1
        att = Attempt(id=self._attempt_seq, request=self._request, fresh=fresh)
        self._attempt = att
        log.info("session connecting room=%s identity=%s attempt=%d fresh_token=%s", att.request.room_name,
                 att.request.participant_identity, att.id, fresh)
        att.task = asyncio.get_running_loop().create_task(self._run_attempt(att))

    async def _run_attempt(self, att: Attempt) -> None:
        deadline = self._sc.connect_timeout_s
        try:
            await within(self._clock, self._connect_room(att), deadline)
        except TokenError as e:
            self._post(att.id, ConnectFailed(e.reason, str(e)))
        except TimeoutError:
            phase = "room connect" if att.in_room_connect else "token fetch"
            self._post(att.id, ConnectFailed(
                FailureReason.UNREACHABLE,
                f"no answer within {deadline:g} s ({phase}); check livekit.url / livekit.endpoint and the network",
            ))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            from livekit import rtc

            if isinstance(e, rtc.ConnectError):
                # one line: a server's error body (Go's http.Error) ends with a newline
                detail = " ".join(e.message.split())
                self._post(att.id, ConnectFailed(classify_connect_error(detail), detail))
            else:
                log.exception("connect attempt failed attempt=%d", att.id)
                self._post(att.id, ConnectFailed(FailureReason.INTERNAL, f"{type(e).__name__}: {e}"))
        finally:
            if att.abandoned:
                await self._dispose(att)

    async def _connect_room(self, att: Attempt) -> None:
        from livekit import rtc

        creds = await self._tokens.get(att.request, fresh=att.fresh)
        if att.abandoned:
            return
        room = self._room_factory()
        att.room = room
        self._wire(room, att)
        room.register_text_stream_handler(TRANSCRIPTION_TOPIC, self._transcripts.handler)
        room.register_text_stream_handler(AGENT_EVENTS_TOPIC, self._agent_events.handler)
        options = rtc.RoomOptions(auto_subscribe=True, connect_timeout=max(1.0, self._sc.connect_timeout_s / 2))
        att.in_room_connect = True
        await room.connect(creds.server_url, creds.participant_token, options)
        att.in_room_connect = False
        if att.is_abandoned():  # a method, not the attribute: _teardown sets it while connect() awaits
            return
        lp = room.local_participant
        device_rpc.register(lp, may_command=functools.partial(self._may_command, att),
                            set_volume=self._set_volume, request_end=self._request_end, get_status=self.status)
        att.source = self._media.audio_source(self._audio.sample_rate)
        att.track = self._media.mic_track(att.source)
        # The flag makes the agent wait (up to 3 s) for a buffer: set it only when the uplink will send one.
        options_pub = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE,
                                              preconnect_buffer=self._sc.preconnect)
        att.publication = await lp.publish_track(att.track, options_pub)
        if self._muted:
            att.track.mute()
        self._post(att.id, functools.partial(self._on_connected, att))

    def _on_connected(self, att: Attempt) -> list[Input]:
        room, source, publication = att.room, att.source, att.publication
        assert room is not None and source is not None and publication is not None, "posted after publish_track"
        log.info("session connected room=%s track=%s", att.request.room_name, publication.sid)
        if self._uplink is not None:
            self._uplink.attach(room.local_participant, source, publication.sid)
        inputs: list[Input] = [ConnectSucceeded()]
        # an agent already in the room fires no participant_active: look at who is here
        for p in list(room.remote_participants.values()):
            inputs += self._consider(p)
        for p in list(room.remote_participants.values()):
            for pub in list(p.track_publications.values()):
                if pub.track is not None:
                    self._maybe_play(att, pub.track, p)
        return inputs

    async def _teardown(self, reason: str) -> None:
        att, self._attempt = self._attempt, None
        self._agent = None
        self._passed_over.clear()
        keep = self._policy.phase is Phase.WAITING
        if self._uplink is not None:
            await self._uplink.detach(keep_buffering=keep, reason=reason)  # closes the pre-connect writer first
        if att is None:
            return
        att.abandoned = True
        if att.task is not None and not att.task.done():
            if att.in_room_connect:
                # let the native connect finish (bounded by the deadline); the task disconnects after it
                self._old_attempts.add(att.task)
                att.task.add_done_callback(self._old_attempts.discard)
                return
            att.task.cancel()
            await asyncio.gather(att.task, return_exceptions=True)
        await self._dispose(att)
        log.info("session torn down room=%s reason=%s", att.request.room_name, reason)

    async def _dispose(self, att: Attempt) -> None:
        if att.disposed:
            return
        att.disposed = True
        for task, stream in list(att.playback.values()):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            try:
                await stream.aclose()
            except Exception as e:
                log.debug("audio stream close failed error=%s", e)
        att.playback.clear()
        source, att.source = att.source, None
        if source is not None:
            try:
                await source.aclose()
            except Exception as e:
                log.debug("audio source close failed error=%s", e)
        if att.room is not None:
            try:
                await within(self._clock, att.room.disconnect(), DISCONNECT_TIMEOUT_S)
            except Exception as e:
                log.warning("disconnect failed room=%s error=%s", att.request.room_name, e)

    def _attempt_tasks(self) -> list[asyncio.Task[None]]:
        tasks = list(self._old_attempts)
        if self._attempt is not None and self._attempt.task is not None:
            tasks.append(self._attempt.task)
        return tasks

    # ---- room events (registered before connect; each runs in the worker, tagged with its attempt) ----------

    def _wire(self, room: rtc.Room, att: Attempt) -> None:
        post = functools.partial(self._post, att.id)
        p = functools.partial
        room.on("participant_connected", lambda participant: post(p(self._consider, participant)))
        room.on("participant_active", lambda participant: post(p(self._consider, participant)))
        room.on("participant_attributes_changed",
                lambda changed, participant: post(p(self._attributes_changed, dict(changed), participant)))
        room.on("participant_disconnected", lambda participant: post(p(self._participant_left, participant)))
        room.on("track_subscribed", lambda track, pub, participant: post(p(self._maybe_play, att, track, participant)))
        room.on("local_track_subscribed", lambda track: post(p(self._local_subscribed, track)))
        room.on("local_track_republished", lambda pub, previous_sid: post(p(self._republished, att, pub, previous_sid)))
        room.on("token_refreshed", lambda *_: log.info("token refreshed by the server"))  # used for reconnects
        room.on("reconnecting", lambda: post(self._reconnecting))
        room.on("reconnected", lambda: post(self._reconnected))
        room.on("disconnected", lambda reason: post(p(self._disconnected, reason)))

    def _consider(self, participant: rtc.Participant) -> list[Input]:
        if not is_session_agent(participant, self._lk.agent_name):
            if is_agent(participant) and participant.identity not in self._passed_over:
                self._passed_over.add(participant.identity)
                log.info("agent passed over identity=%s name=%s: the device dispatches %s", participant.identity,
                         participant.attributes.get(AGENT_NAME_ATTR, ""), self._lk.agent_name)
            return []
        inputs: list[Input] = []
        if self._agent is None:
            self._agent = participant.identity
            self._turns.new_agent()
            log.info("agent joined identity=%s name=%s", participant.identity,
                     participant.attributes.get(AGENT_NAME_ATTR, ""))
            inputs.append(AgentJoined(participant.identity))
        elif self._agent != participant.identity:
            return []  # one agent per session: the first one wins
        if is_active(participant) and self._uplink is not None:
            self._uplink.set_agent(participant.identity)
        state = participant.attributes.get(AGENT_STATE_ATTR)
        if state:
            inputs += self._agent_state(state)
        return inputs

    def _may_command(self, att: Attempt, caller: str) -> bool:
        """Whether `caller` is the session's agent, the only participant the device's RPC methods serve.

        Called from the SDK's RPC handlers, outside the worker: an agent's call can outrun the worker's handling
        of its join (an agent already in the room is only looked at once the mic is published), so until the
        worker has chosen an agent, the room is asked by the same rule, in the order `_on_connected` reads it."""
        if self._attempt is not att or att.room is None:
            return False
        if self._agent is not None:
            return caller == self._agent
        first = next((p for p in list(att.room.remote_participants.values())
                      if is_session_agent(p, self._lk.agent_name)), None)
        return first is not None and first.identity == caller

    def _attributes_changed(self, changed: dict[str, str], participant: rtc.Participant) -> list[Input]:
        if self._agent is None:
            return self._consider(participant)
        if participant.identity == self._agent and AGENT_STATE_ATTR in changed:
            return self._agent_state(changed[AGENT_STATE_ATTR])
        return []

    def _agent_state(self, raw: str) -> list[Input]:
        state = AgentState.of(raw)
        if state is None:
            log.debug("agent state ignored state=%s", raw)
            return []
        if state is not AgentState.SPEAKING and self._barging:
            self._barging = False
            log.info("agent stopped speaking after the interruption state=%s", state)
        if state is AgentState.LISTENING:
            self._listening_for_press()
        if state.ready:
            self._post(None, self._flush_turns)  # after the policy has seen the state
        return [AgentStateReported(state)]

    def _participant_left(self, participant: rtc.RemoteParticipant) -> list[Input]:
        if participant.identity != self._agent:
            return []
        reason = disconnect_reason_name(participant.disconnect_reason)
        log.info("agent left identity=%s reason=%s", participant.identity, reason)
        self._agent = None
        if self._uplink is not None:
            self._uplink.set_agent(None)
        return [AgentLeft(deliberate=reason == "CLIENT_INITIATED")]

    def _maybe_play(self, att: Attempt, track: rtc.Track, participant: rtc.Participant) -> None:
        from livekit import rtc

        if rtc.TrackKind.Name(track.kind) != "KIND_AUDIO" or not speaks_for(participant, self._agent):
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
            if self._barging:
                continue  # interrupted: dropped until the agent stops speaking (the player was flushed)
            frame = event.frame
            if gate.admit(np.frombuffer(frame.data, dtype=np.int16), frame.duration):
                player.push(frame)
            elif gate.ended():
                player.end()

    def _local_subscribed(self, track: rtc.Track) -> None:
        if self._uplink is not None:
            self._uplink.track_subscribed(track.sid)

    def _republished(self, att: Attempt, publication: rtc.LocalTrackPublication, previous_sid: str) -> None:
        log.info("mic republished previous=%s track=%s", previous_sid, publication.sid)
        att.publication = publication
        if self._uplink is not None:
            self._uplink.republished(publication.sid)

    def _reconnecting(self) -> list[Input]:
        if self._uplink is not None:
            self._uplink.reconnecting()
        return [RoomReconnecting()]

    def _reconnected(self) -> list[Input]:
        if self._uplink is not None:
            self._uplink.reconnected()
        return [RoomReconnected()]

    def _disconnected(self, reason: int) -> list[Input]:
        return [Disconnected(disconnect_reason_name(reason))]

    # ---- turns, mute, agent-driven control -------------------------------------------------------------------

    # ---- press → listening: each press once, when the agent is first listening for it ----------------------
    # A session's first press waits for the agent to join and say `listening`. A later press (push-to-talk turns)
    # usually finds it listening already, after its reply: that press is answered when its `start_turn` call
    # returns (the agent has opened the turn) — or at once when the agent takes no turn calls — not when the agent
    # next says `listening`, which is after its next reply. A press during the agent's reply (barge-in) is
    # answered when the interrupted agent says `listening`.

    def _listening_for_press(self) -> None:
        if self._press_t is not None:
            self._tally.heard(round((self._clock.now() - self._press_t) * 1000))
            self._press_t = None

    def _turn(self, which: str) -> list[Input]:
        if which == "start":
            if self._policy.phase is not Phase.IDLE:
                self._press_t = self._press_t or self._clock.now()
                if self._policy.agent_state is AgentState.LISTENING and not self._turns.active:
                    self._listening_for_press()  # nothing to open: the agent listens already
            if self._policy.agent_state is AgentState.SPEAKING:
                self._audio.player.flush()  # barge-in: stop playing at once; start_turn interrupts the agent
                log.info("barge-in agent=%s", self._agent)
        self._turns.queue(which)
        self._flush_turns()
        return [TurnBegan()] if which == "start" else [TurnFinished()]

    def _turn_start_pending(self, pending: bool) -> None:
        if self._uplink is not None:
            self._uplink.set_turn_pending(pending)
        if not pending and self._policy.agent_state is AgentState.LISTENING:
            self._listening_for_press()  # the agent answered the press's start_turn: it listens for this press

    def _flush_turns(self) -> None:
        att = self._attempt
        room = att.room if att is not None and att.publication is not None else None
        state = self._policy.agent_state
        if not self._turns.pending or room is None or self._agent is None or state is None or not state.ready:
            return
        if self._turn_task is None or self._turn_task.done():
            lp, agent = room.local_participant, self._agent
            self._turn_task = asyncio.get_running_loop().create_task(self._turns.flush(lp, agent))

    def _set_muted(self, muted: bool) -> None:
        self._muted = muted
        if self._uplink is not None:
            self._uplink.set_muted(muted)
        att = self._attempt
        if att is not None and att.track is not None:
            att.track.mute() if muted else att.track.unmute()
        log.info("mic muted=%s", muted)

    def _interrupt(self) -> None:
        if self._policy.agent_state is AgentState.SPEAKING and not self._barging:
            self._barging = True
            log.info("barge-in agent=%s: its audio is dropped until it stops speaking", self._agent)

    def _user_away(self, identity: str) -> None:
        if identity == self._agent:
            self._post(None, UserAway())

    def _set_volume(self, volume: float) -> float:
        self._audio.player.volume = volume
        return volume

    def _request_end(self, reason: str) -> None:
        self._post(None, Stop(reason))

    # ---- timers and events out -------------------------------------------------------------------------------

    def _timer_fired(self, fired: Fired[TimerName]) -> None:
        self._post(None, functools.partial(self._timer_due, fired))

    def _timer_due(self, fired: Fired[TimerName]) -> list[Input]:
        return [TimerDue(fired.name)] if self._timers.take(fired) else []

    def _publish(self, event: Event) -> None:
        if isinstance(event, SessionEvent):
            event = replace(event, session=self._session)
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


def _rtc_room() -> rtc.Room:
    from livekit import rtc

    return rtc.Room()
