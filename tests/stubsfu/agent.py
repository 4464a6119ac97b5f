"""The scripted agent inside the stub: joins late as kind AGENT, takes the pre-connect buffer, listens, answers.

It is not a WebRTC peer of its own; the stub routes to it what the SFU would forward (the client's mic, data
packets addressed to it) and sends in its name what a real agent would (participant updates with
`lk.agent.state`, TrackSubscribed for the mic, RPC acks/responses, a transcript text stream, its voice track).

States: `initializing` on join → `listening` → (end of a turn) `thinking` → `speaking` while the reply plays →
`listening`. A turn ends by energy (speech, then `silence_s` of quiet) or, with push-to-talk RPCs on, by
`end_turn`. Each mic track the agent subscribes to is one recorded session (see recorder.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
from livekit.protocol import models

from . import datastreams, preconnect
from .recorder import SessionRecorder
from .reply import ReplyTrack, load_wav, to_48k_mono

log = logging.getLogger("tests.stubsfu.agent")

AGENT_STATE = "lk.agent.state"
PTT_METHODS = ("start_turn", "end_turn", "cancel_turn")


class AgentHost(Protocol):
    """What the room offers the agent."""

    def publish_participant(self, info: models.ParticipantInfo) -> None: ...
    def track_subscribed(self, track_sid: str) -> None: ...
    def send_data(self, destination_identity: str, packet: models.DataPacket) -> None: ...
    def offer_track(self, participant_sid: str, track_sid: str, make_track: Callable[[], ReplyTrack]) -> None: ...
    def record_event(self, kind: str, **fields: Any) -> None: ...


@dataclass
class AgentConfig:
    delay_s: float | None = 2.0  # None: never joins
    reply: str = "echo"  # "echo" or a WAV path
    record_dir: Path | None = None
    ptt_rpcs: bool = False
    interruptible: bool = True  # speech while it speaks is a new turn (False: AgentSession(allow_interruptions=False))
    agent_name: str = "stub-agent"
    init_s: float = 0.5  # time spent in `initializing`
    subscribe_delay_s: float = 0.3  # join → subscribe to the mic
    think_s: float = 0.4
    speech_rms: float = 500.0  # int16 RMS above which a 10 ms block is speech
    silence_s: float = 0.7  # quiet after speech that ends a VAD turn
    min_speech_s: float = 0.2
    max_reply_s: float = 8.0
    # session-N numbers, shared by the agents of every room of one stub (a device opens a room per session)
    session_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))


@dataclass
class Session:
    """One subscribed mic track."""

    track_sid: str
    client_identity: str
    recorder: SessionRecorder
    outcome_known: bool = False
    pending_live: list[av.AudioFrame] = field(default_factory=list)
    speech_s: float = 0.0
    quiet_s: float = 0.0
    turn_start: int | None = None  # sample index in heard
    ptt_start: int | None = None
    preconnect_raw: bytes | None = None


class ScriptedAgent:
    def __init__(self, host: AgentHost, config: AgentConfig) -> None:
        self.host = host
        self.config = config
        job = "AJ_" + secrets.token_hex(6)
        self.info = models.ParticipantInfo(
            sid="PA_" + secrets.token_hex(6), identity=f"agent-{job}", name=config.agent_name,
            kind=models.ParticipantInfo.AGENT, state=models.ParticipantInfo.ACTIVE, is_publisher=True,
            permission=models.ParticipantPermission(can_subscribe=True, can_publish=True, can_publish_data=True,
                                                    agent=True),
            client_protocol=0,  # legacy data packets for byte streams and RPC: what the stub understands
        )
        self.info.attributes["lk.agent.name"] = config.agent_name
        self.voices: list[ReplyTrack] = []  # one per client peer: an aiortc track feeds a single sender
        self.voice_info = models.TrackInfo(sid="TR_" + secrets.token_hex(6), type=models.AUDIO, name="agent_voice",
                                           source=models.TrackSource.MICROPHONE, mime_type="audio/opus")
        self.joined = False
        self.left = False
        self.state = ""
        self.buffers = preconnect.PreConnectBuffers()
        self.assembler = datastreams.StreamAssembler(self._stream_opened, self._stream_closed)
        self.sessions: dict[str, Session] = {}
        self.session_dirs: list[str] = []
        self.mics: dict[str, str] = {}  # published mic track sid → client identity, in publish order
        self._sequence = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._join_task: asyncio.Task[None] | None = None
        self._reply_wav = None if config.reply == "echo" else load_wav(Path(config.reply))
        self._speaking_until = 0.0
        self._last_stream_by_client: dict[str, datastreams.IncomingStream] = {}

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def dispatched(self, agent_name: str) -> None:
        """A joining client's token dispatches `agent_name`: the real server sends the worker registered under
        that name, which carries it in `lk.agent.name`, so the agent takes it (before it joins; the first wins)."""
        if self.joined or self.left or self._join_task is not None or not agent_name:
            return
        self.info.name = agent_name
        self.info.attributes["lk.agent.name"] = agent_name

    def on_client_joined(self) -> None:
        if self.joined or self.left or self._join_task is not None or self.config.delay_s is None:
            return
        self._join_task = self._spawn(self._join_after(self.config.delay_s))

    async def _join_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.join()

    def join(self) -> None:
        if self.joined:
            return
        self.joined, self.left = True, False
        self.info.joined_at = int(time.time())
        self.info.joined_at_ms = int(time.time() * 1000)
        self.info.state = models.ParticipantInfo.ACTIVE
        del self.info.tracks[:]
        self.info.tracks.append(self.voice_info)
        self._set_state("initializing")
        self.host.offer_track(self.info.sid, self.voice_info.sid, self.new_voice_track)
        self.host.record_event("agent_joined", identity=self.info.identity)
        for track_sid in list(self.mics):
            self._spawn(self._subscribe_later(track_sid))
        self._spawn(self._finish_initializing())

    async def _finish_initializing(self) -> None:
        await asyncio.sleep(self.config.init_s)
        if self.joined and self.state == "initializing":
            self._set_state("listening")

    def leave(self) -> None:
        if not self.joined:
            return
        self.joined, self.left = False, True
        self._stop_speaking()
        self.info.state = models.ParticipantInfo.DISCONNECTED
        self._publish()
        self.host.record_event("agent_left", identity=self.info.identity)
        self.flush()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.flush()

    def flush(self) -> None:
        for session in self.sessions.values():
            session.recorder.flush(session.preconnect_raw)

    async def autoflush(self, every_s: float = 2.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            for session in self.sessions.values():
                if session.recorder.dirty:
                    session.recorder.flush(session.preconnect_raw)

    # ---- what the room tells the agent ------------------------------------------------------------------------

    def on_mic_published(self, track_sid: str, client_identity: str) -> None:
        self.mics[track_sid] = client_identity
        if self.joined:
            self._spawn(self._subscribe_later(track_sid))

    def on_mic_gone(self, track_sid: str) -> None:
        self.mics.pop(track_sid, None)
        session = self.sessions.get(track_sid)
        if session is not None:
            session.recorder.flush(session.preconnect_raw)

    async def _subscribe_later(self, track_sid: str) -> None:
        await asyncio.sleep(self.config.subscribe_delay_s)
        if self.joined and track_sid in self.mics and track_sid not in self.sessions:
            self.subscribe(track_sid)

    def subscribe(self, track_sid: str) -> None:
        client = self.mics[track_sid]
        number = next(self.config.session_numbers) if self.config.record_dir is not None else len(self.session_dirs) + 1
        directory = (self.config.record_dir or Path("/nonexistent")) / f"session-{number}"
        recorder = SessionRecorder(directory, {
            "published_track_sid": track_sid, "agent_identity": self.info.identity, "client_identity": client,
            "ptt_rpcs": self.config.ptt_rpcs, "subscribed_at_unix_ms": int(time.time() * 1000),
        })
        session = Session(track_sid=track_sid, client_identity=client, recorder=recorder)
        self.sessions[track_sid] = session
        if self.config.record_dir is not None:
            self.session_dirs.append(str(directory))
        self.host.track_subscribed(track_sid)
        self.host.record_event("agent_subscribed", track_sid=track_sid, session_dir=str(directory))
        self._spawn(self._take_buffer(session))

    async def _take_buffer(self, session: Session) -> None:
        outcome = await self.buffers.wait_for(session.track_sid)
        stream = outcome.stream or self._last_stream_by_client.get(session.client_identity)
        meta = session.recorder.meta
        meta["preconnect_status"] = outcome.status
        meta["preconnect_received_track_ids"] = self.buffers.received_track_ids()
        if stream is not None:
            session.preconnect_raw = stream.payload
            meta.update(
                track_id=stream.attributes.get("trackId", ""), preconnect_attributes=dict(stream.attributes),
                preconnect_topic=stream.topic, preconnect_mime_type=stream.mime_type,
                preconnect_bytes=len(session.preconnect_raw), preconnect_complete=stream.closed is not None,
                stream_open_to_close_ms=None if stream.closed is None else round(
                    (stream.closed - stream.opened) * 1000, 1),
            )
        if outcome.status == "used" and session.preconnect_raw is not None:
            session.recorder.set_preconnect(session.preconnect_raw, outcome.sample_rate, outcome.channels)
            self._listen(session, session.recorder.heard())
        session.outcome_known = True
        self.host.record_event("preconnect", track_sid=session.track_sid, status=outcome.status)
        log.info("preconnect track=%s status=%s", session.track_sid, outcome.status)
        for frame in session.pending_live:
            self._live(session, frame)
        session.pending_live.clear()
        session.recorder.flush(session.preconnect_raw)

    def on_audio(self, track_sid: str, frame: av.AudioFrame) -> None:
        session = self.sessions.get(track_sid)
        if session is None or not self.joined:
            return
        if not session.outcome_known:
            session.pending_live.append(frame)  # the real agent also holds live audio until the buffer is in
            return
        self._live(session, frame)

    def _live(self, session: Session, frame: av.AudioFrame) -> None:
        rec = session.recorder
        samples = rec.add_live(frame)
        if not len(samples) and frame.samples:
            # the recorder trims the silence before the client's first live sound; the agent still hears it as
            # silence (a request said entirely into the pre-connect buffer ends its turn on it)
            n = round(frame.samples * rec.sample_rate / (frame.sample_rate or rec.sample_rate)) * rec.channels
            self._listen(session, np.zeros(n, dtype=np.int16), start_index=rec.length)
            return
        self._listen(session, samples)

    def on_packet(self, sender_identity: str, packet: models.DataPacket) -> None:
        if packet.destination_identities and self.info.identity not in packet.destination_identities:
            return
        if not self.joined:
            return
        if self.assembler.feed(packet):
            return
        which = packet.WhichOneof("value")
        if which == "rpc_request":
            self._rpc(sender_identity, packet.rpc_request)
        elif which == "rpc_response":
            response = packet.rpc_response
            self.host.record_event("rpc_answered", request_id=response.request_id, payload=response.payload,
                                   error=response.error.code if response.HasField("error") else None)

    def _stream_opened(self, stream: datastreams.IncomingStream) -> None:
        self.host.record_event("stream_opened", topic=stream.topic, attributes=dict(stream.attributes))
        if stream.topic == preconnect.TOPIC:
            self._last_stream_by_client[stream.sender_identity] = stream
            self.buffers.on_open(stream)

    def _stream_closed(self, stream: datastreams.IncomingStream) -> None:
        self.host.record_event("stream_closed", topic=stream.topic, bytes=sum(map(len, stream.chunks)),
                               open_to_close_ms=round(((stream.closed or 0) - stream.opened) * 1000, 1))
        if stream.topic == preconnect.TOPIC:
            self.buffers.on_close(stream)

    # ---- turns --------------------------------------------------------------------------------------------------

    def _listen(self, session: Session, samples: np.ndarray, start_index: int | None = None) -> None:
        if self.config.ptt_rpcs or not len(samples):
            return
        if self.state == "speaking" and not self.config.interruptible:
            session.turn_start, session.speech_s, session.quiet_s = None, 0.0, 0.0  # deaf until it has finished
            return
        rec = session.recorder
        block = max(1, rec.sample_rate // 100) * rec.channels
        if start_index is None:
            start_index = rec.length - len(samples) // rec.channels
        for i in range(0, len(samples) - block + 1, block):
            rms = float(np.sqrt(np.mean(samples[i:i + block].astype(np.float64) ** 2)))
            if rms >= self.config.speech_rms:
                if session.turn_start is None:
                    session.turn_start = max(0, start_index + i // rec.channels - rec.sample_rate // 5)
                session.speech_s += 0.01
                session.quiet_s = 0.0
            elif session.turn_start is not None:
                session.quiet_s += 0.01
                if session.quiet_s >= self.config.silence_s:
                    if session.speech_s >= self.config.min_speech_s:
                        self._end_turn(session, session.turn_start, start_index + i // rec.channels, "vad")
                    session.turn_start, session.speech_s, session.quiet_s = None, 0.0, 0.0

    def _end_turn(self, session: Session, start: int, end: int, how: str) -> None:
        rec = session.recorder
        heard = rec.heard()[start * rec.channels:end * rec.channels]
        reply = to_48k_mono(heard, rec.sample_rate, rec.channels) if self._reply_wav is None else self._reply_wav
        reply = reply[: int(self.config.max_reply_s * 48000)]
        rec.meta["turns"].append({"start_sample": start, "end_sample": end, "ended_by": how,
                                  "reply_ms": round(len(reply) / 48, 1)})
        rec.dirty = True
        self._spawn(self._answer(session, heard, reply))

    async def _answer(self, session: Session, heard: np.ndarray, reply: np.ndarray) -> None:
        self._set_state("thinking")
        await asyncio.sleep(self.config.think_s)
        if not self.joined:
            return
        self._set_state("speaking")
        rec = session.recorder
        self._send_transcript(session, f"heard {len(heard) / rec.channels / rec.sample_rate:.2f} s")
        for voice in self.voices:
            voice.play(reply)
        self._speaking_until = time.monotonic() + len(reply) / 48000
        await asyncio.sleep(len(reply) / 48000 + 0.05)
        if self.joined and self.state == "speaking" and time.monotonic() >= self._speaking_until:
            self._stop_speaking()
            self._set_state("listening")

    def _send_transcript(self, session: Session, text: str) -> None:
        for packet in datastreams.text_stream_packets(
            text, "lk.transcription", self.info.identity, self.info.sid, session.client_identity, self._next_seq,
            attributes={"lk.segment_id": "SG_" + secrets.token_hex(4), "lk.transcription_final": "true",
                        "lk.transcribed_track_id": self.voice_info.sid},
        ):
            self.host.send_data(session.client_identity, packet)

    # ---- what the agent does to the client (test control) -------------------------------------------------------

    def call_client(self, method: str, payload: str = "") -> list[str]:
        """An RPC on every client with a subscribed mic (`device.end_session`, ...); the ids of the requests (their
        answers are recorded as `rpc_answered` events)."""
        ids = []
        for client in {s.client_identity for s in self.sessions.values()}:
            request_id, packet = datastreams.rpc_request(method, payload, self.info.identity, self.info.sid, client,
                                                         self._next_seq())
            self.host.send_data(client, packet)
            self.host.record_event("rpc_called", method=method, client=client, request_id=request_id)
            ids.append(request_id)
        return ids

    def send_event(self, event: dict[str, Any]) -> int:
        """One `lk.agent.events` message (as livekit-agents' ClientEventsHandler streams it) to every client."""
        clients = {s.client_identity for s in self.sessions.values()}
        text = json.dumps({**event, "created_at": time.time()})
        for client in clients:
            for packet in datastreams.text_stream_packets(text, "lk.agent.events", self.info.identity, self.info.sid,
                                                          client, self._next_seq):
                self.host.send_data(client, packet)
        self.host.record_event("agent_event", event=event, clients=len(clients))
        return len(clients)

    # ---- push-to-talk RPCs --------------------------------------------------------------------------------------

    def _rpc(self, caller: str, request: models.RpcRequest) -> None:
        ident, sid = self.info.identity, self.info.sid
        self.host.send_data(caller, datastreams.rpc_ack(request.id, ident, sid, caller, self._next_seq()))
        session = self._session_of(caller)
        result: dict[str, Any] = {"method": request.method, "payload": request.payload, "caller": caller,
                                  "unix_ms": int(time.time() * 1000)}
        if not self.config.ptt_rpcs or request.method not in PTT_METHODS:
            error = (datastreams.RPC_UNSUPPORTED_METHOD, "Method not supported at destination")
            self.host.send_data(caller, datastreams.rpc_response(request.id, ident, sid, caller, self._next_seq(),
                                                                  error=error))
            result["error"] = error[0]
        else:
            self._ptt(request.method, session)
            self.host.send_data(caller, datastreams.rpc_response(request.id, ident, sid, caller, self._next_seq(),
                                                                  payload=""))
            result["error"] = None
        self.host.record_event("rpc", **result)
        if session is not None:
            session.recorder.meta["rpc_calls"].append(result)
            session.recorder.dirty = True

    def _ptt(self, method: str, session: Session | None) -> None:
        now = 0 if session is None else session.recorder.length
        if method == "start_turn":
            self._stop_speaking()  # barge-in
            self._speaking_until = 0.0
            if session is not None:
                session.ptt_start = now
            self._set_state("listening")
        elif method == "end_turn":
            if session is not None and session.ptt_start is not None:
                start, session.ptt_start = session.ptt_start, None
                self._end_turn(session, start, now, "end_turn")
        elif method == "cancel_turn" and session is not None:
            session.ptt_start = None

    def _session_of(self, identity: str) -> Session | None:
        for session in reversed(list(self.sessions.values())):
            if session.client_identity == identity:
                return session
        return None

    def new_voice_track(self) -> ReplyTrack:
        track = ReplyTrack()
        self.voices = [v for v in self.voices if v.readyState == "live"] + [track]
        return track

    def _stop_speaking(self) -> None:
        for voice in self.voices:
            voice.stop_speaking()

    # ---- helpers ------------------------------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        self.state = state
        self.info.attributes[AGENT_STATE] = state
        self._publish()
        self.host.record_event("agent_state", state=state)

    def _publish(self) -> None:
        self.info.version += 1
        self.host.publish_participant(self.info)

    def _next_seq(self) -> int:
        self._sequence += 1
        return self._sequence

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    def snapshot(self) -> dict[str, Any]:
        return {"identity": self.info.identity, "sid": self.info.sid, "joined": self.joined, "state": self.state,
                "voice_track_sid": self.voice_info.sid, "voice_frames_sent": sum(v.frames_sent for v in self.voices),
                "sessions": self.session_dirs, "mics": dict(self.mics)}


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("agent_task_failed error=%s", task.exception(), exc_info=task.exception())

