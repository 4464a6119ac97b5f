"""Stand-ins for the session's collaborators, at the same API as the real ones.

`FakeRoom` and friends mirror livekit.rtc 1.2.x (`Room.on(event, cb)` with the SDK's event names and argument
shapes, `local_participant.stream_bytes(...)` returning a writer with `write`/`aclose`, `publish_track`,
`perform_rpc(destination_identity=, method=, payload=)`, `register_rpc_method`...), and use the real rtc enums
and error classes. `FakeAudioPort` is a ring whose sample values encode their own index, so a test can prove
which samples went where. `FakeClock` is driven by hand.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import itertools
import json
from collections.abc import Callable
from typing import Any

import numpy as np
from livekit import rtc

from device.audio.shared import SharedRing
from device.session.tokens import Credentials, TokenRequest

# ---- time -------------------------------------------------------------------------------------------------------


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], None]):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self._heap: list[tuple[float, int, FakeTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.t + max(0.0, delay), callback)
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> None:
        target = self.t + seconds
        while self._heap and self._heap[0][0] <= target:
            when, _, timer = heapq.heappop(self._heap)
            self.t = max(self.t, when)
            if not timer.cancelled:
                timer.callback()
        self.t = target


async def settle(rounds: int = 30) -> None:
    """Let every ready task run (no real time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def run_for(clock: FakeClock, seconds: float, step: float = 0.1, sup: Any = None) -> None:
    """Advance fake time in steps, letting the loop react between steps."""
    steps = round(seconds / step)
    for _ in range(steps):
        clock.advance(step)
        await settle()
        if sup is not None:
            await sup.wait_quiet()


# ---- audio ------------------------------------------------------------------------------------------------------


def pattern(first: int, n: int) -> np.ndarray:
    """The 'loud' signal: every sample's value encodes its ring index (and is far above any speech gate)."""
    idx = np.arange(first, first + n, dtype=np.int64)
    return (8000 + idx % 16000).astype(np.int16)


class FakePlayer:
    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.flushes = 0
        self.ends = 0
        self.volume = 0.8

    def push(self, frame: Any) -> None:
        self.frames.append(frame)

    def end(self) -> None:
        self.ends += 1

    def flush(self) -> None:
        self.flushes += 1


class FakeReader:
    def __init__(self, port: FakeAudioPort, start: int, chunk: int):
        self.port = port
        self.pos = start
        self.chunk = chunk
        self.closed = False

    def __aiter__(self) -> FakeReader:
        return self

    async def __anext__(self) -> tuple[int, np.ndarray]:
        while not self.closed and self.pos >= self.port.produced:
            self.port.changed.clear()
            await self.port.changed.wait()
        if self.closed:
            raise StopAsyncIteration
        n = min(self.chunk, self.port.produced - self.pos)
        first = self.pos
        self.pos += n
        return first, self.port.samples[first : first + n].copy()

    async def advance(self) -> int:
        while not self.closed and self.pos >= self.port.produced:
            self.port.changed.clear()
            await self.port.changed.wait()
        if self.closed:
            raise StopAsyncIteration
        self.pos = self.port.produced
        return self.pos

    def head(self) -> int:
        return self.port.produced

    def close(self) -> None:
        self.closed = True
        self.port.changed.set()


class FakeAudioPort:
    """A ring that keeps everything (or, with `keep_ms`, lets a reader start no further back than that, as the real
    ring's capacity does); `speak(ms)` appends loud patterned audio, `silence(ms)` zeros."""

    def __init__(self, sample_rate: int = 16000, chunk_ms: int = 20, keep_ms: int | None = None):
        self.sample_rate = sample_rate
        self.keep = None if keep_ms is None else sample_rate * keep_ms // 1000
        self.player = FakePlayer()
        self.samples = np.zeros(0, np.int16)
        self.produced = 0
        self.changed = asyncio.Event()
        self.chunk = sample_rate * chunk_ms // 1000
        self.readers: list[FakeReader] = []
        self._ring: SharedRing | None = None  # for session processes, made when one asks

    @property
    def ring_fd(self) -> int:
        if self._ring is None:
            self._ring = SharedRing(self.sample_rate * 120)
            self._ring.write(self.samples)
        return self._ring.fd

    def _append(self, data: np.ndarray) -> None:
        self.samples = np.concatenate([self.samples, data])
        if self._ring is not None:
            self._ring.write(data)
        self.produced += len(data)
        self.changed.set()

    def speak(self, ms: int) -> None:
        self._append(pattern(self.produced, self.sample_rate * ms // 1000))

    def silence(self, ms: int) -> None:
        self._append(np.zeros(self.sample_rate * ms // 1000, np.int16))

    def oldest(self) -> int:
        return 0 if self.keep is None else max(0, self.produced - self.keep)

    def mark(self, preroll_ms: int) -> int:
        return max(self.oldest(), self.produced - self.sample_rate * preroll_ms // 1000)

    def reader(self, start_index: int) -> FakeReader:
        r = FakeReader(self, max(start_index, self.oldest()), self.chunk)  # a start gone from the ring is clamped
        self.readers.append(r)
        return r

    def speech_level_dbfs(self) -> float:
        return -90.0


# ---- media (what RtcMedia makes) ----------------------------------------------------------------------------------


class FakeSource:
    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.frames: list[rtc.AudioFrame] = []
        self.closed = False

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        assert not self.closed, "capture after aclose"
        assert frame.sample_rate == self.sample_rate
        self.frames.append(frame)

    async def aclose(self) -> None:
        self.closed = True

    def samples(self) -> np.ndarray:
        if not self.frames:
            return np.zeros(0, np.int16)
        return np.concatenate([np.frombuffer(bytes(f.data), dtype="<i2") for f in self.frames])


class FakeTrack:
    def __init__(self, sid: str = "", kind: int = rtc.TrackKind.KIND_AUDIO):
        self.sid = sid
        self.kind = kind
        self.muted = False

    def mute(self) -> None:
        self.muted = True

    def unmute(self) -> None:
        self.muted = False


class FakeAudioStream:
    def __init__(self, track: Any) -> None:
        self.track = track
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False

    def __aiter__(self) -> FakeAudioStream:
        return self

    async def __anext__(self) -> Any:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        return rtc.AudioFrameEvent(frame=item)

    async def aclose(self) -> None:
        self.closed = True


class FakeMedia:
    def __init__(self) -> None:
        self.sources: list[FakeSource] = []
        self.streams: list[FakeAudioStream] = []

    def audio_source(self, sample_rate: int) -> FakeSource:
        self.sources.append(FakeSource(sample_rate))
        return self.sources[-1]

    def mic_track(self, source: FakeSource) -> FakeTrack:
        return FakeTrack()

    def audio_stream(self, track: Any, sample_rate: int, frame_ms: int) -> FakeAudioStream:
        self.frame_ms = frame_ms
        self.streams.append(FakeAudioStream(track))
        return self.streams[-1]


# ---- room -------------------------------------------------------------------------------------------------------

_sids = itertools.count(1)


class FakeEmitter:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Callable[..., Any]]] = {}

    def on(self, event: str, callback: Callable[..., Any] | None = None) -> Callable[..., Any]:
        def register(cb: Callable[..., Any]) -> Callable[..., Any]:
            self._handlers.setdefault(event, []).append(cb)
            return cb

        return register(callback) if callback is not None else register

    def emit(self, event: str, *args: Any) -> None:
        for cb in list(self._handlers.get(event, [])):
            cb(*args)


class FakeWriter:
    """rtc.ByteStreamWriter: write(bytes), aclose(reason=, attributes=)."""

    def __init__(self, name: str, topic: str, mime_type: str, attributes: dict[str, str], destinations: list[str]):
        self.name, self.topic, self.mime_type = name, topic, mime_type
        self.attributes = attributes
        self.destination_identities = destinations
        self.chunks: list[bytes] = []
        self.closed = False

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise RuntimeError("Cannot write after stream is closed")
        self.chunks.append(bytes(data))

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None) -> None:
        if self.closed:
            raise RuntimeError("Stream already closed")
        self.closed = True

    def samples(self) -> np.ndarray:
        return np.frombuffer(b"".join(self.chunks), dtype="<i2")


class FakePublication:
    def __init__(self, track: FakeTrack, source: int) -> None:
        self.sid = f"TR_{next(_sids):04d}"
        self.track = track
        self.source = source
        track.sid = self.sid


class FakeLocalParticipant:
    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.sid = f"PA_{next(_sids):04d}"
        self.attributes: dict[str, str] = {}
        self.track_publications: dict[str, FakePublication] = {}
        self.publish_options: list[rtc.TrackPublishOptions] = []
        self.writers: list[FakeWriter] = []
        self.rpc_handlers: dict[str, Callable[..., Any]] = {}
        self.rpc_calls: list[tuple[str, str, str]] = []
        self.rpc_errors: dict[str, Exception] = {}
        self.rpc_gates: dict[str, asyncio.Event] = {}  # a call to this method is answered once its gate is set
        self.publish_gate: asyncio.Event | None = None  # publish_track returns once it is set
        self.texts: list[tuple[str, str]] = []
        self.sent_bytes: list[tuple[str, bytes, list[str]]] = []  # (topic, data, destination identities)

    async def publish_track(self, track: FakeTrack, options: rtc.TrackPublishOptions) -> FakePublication:
        self.publish_options.append(options)
        if self.publish_gate is not None:
            await self.publish_gate.wait()
        pub = FakePublication(track, options.source)
        self.track_publications[pub.sid] = pub
        return pub

    async def stream_bytes(
        self,
        name: str,
        *,
        total_size: int | None = None,
        mime_type: str = "application/octet-stream",
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        destination_identities: list[str] | None = None,
        topic: str = "",
    ) -> FakeWriter:
        w = FakeWriter(name, topic, mime_type, dict(attributes or {}), list(destination_identities or []))
        self.writers.append(w)
        return w

    async def perform_rpc(
        self,
        *,
        destination_identity: str,
        method: str,
        payload: str,
        response_timeout: float | None = None,
        max_round_trip_latency: float | None = None,
    ) -> str:
        self.rpc_calls.append((destination_identity, method, payload))
        if method in self.rpc_gates:
            await self.rpc_gates[method].wait()
        if method in self.rpc_errors:
            raise self.rpc_errors[method]
        return ""

    def register_rpc_method(self, method_name: str, handler: Callable[..., Any] | None = None) -> Any:
        assert handler is not None
        self.rpc_handlers[method_name] = handler
        return handler

    def invoke(self, method: str, payload: str = "", caller: str = "agent-1") -> str:
        data = rtc.RpcInvocationData(request_id="r1", caller_identity=caller, payload=payload, response_timeout=5.0,
                                     method=method)
        return self.rpc_handlers[method](data)

    async def send_bytes(self, data: bytes, *, topic: str = "", name: str | None = None,
                         mime_type: str | None = None, destination_identities: list[str] | None = None,
                         attributes: dict[str, str] | None = None, stream_id: str | None = None,
                         compress: bool = True) -> Any:
        self.sent_bytes.append((topic, bytes(data), list(destination_identities or [])))

    async def send_text(self, text: str, *, destination_identities: list[str] | None = None, topic: str = "",
                        attributes: dict[str, str] | None = None, reply_to_id: str | None = None,
                        compress: bool = True) -> Any:
        self.texts.append((topic, text))


class FakeRemoteParticipant:
    def __init__(self, identity: str, *, kind: int, state: int, attributes: dict[str, str] | None = None):
        self.identity = identity
        self.sid = f"PA_{next(_sids):04d}"
        self.name = identity
        self.kind = kind
        self.state = state
        self.attributes = dict(attributes or {})
        self.track_publications: dict[str, Any] = {}
        self.disconnect_reason = rtc.DisconnectReason.UNKNOWN_REASON


class FakeTextReader:
    def __init__(self, text: str, attributes: dict[str, str]):
        self._text = text
        self.info = type("Info", (), {"attributes": attributes, "topic": "lk.transcription"})()

    async def read_all(self) -> str:
        return self._text


class FakeByteReader:
    """rtc.ByteStreamReader: the chunks of one stream, iterated (`gate`: the last chunk waits for it)."""

    def __init__(self, data: bytes, chunk: int = 7, gate: asyncio.Event | None = None):
        self._chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""]
        self._gate = gate
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def __aiter__(self) -> FakeByteReader:
        return self

    async def __anext__(self) -> bytes:
        if not self._chunks:
            raise StopAsyncIteration
        if len(self._chunks) == 1 and self._gate is not None:
            await self._gate.wait()
        return self._chunks.pop(0)


AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
STANDARD = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
ACTIVE = rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE
JOINED = rtc.ParticipantState.PARTICIPANT_STATE_JOINED


class FakeRoom(FakeEmitter):
    """A room at the rtc.Room API. `connect` follows `behaviour`: None = succeed, an exception = raise it,
    "hang" = never answer, "hold-publish" = succeed, but publishing the mic waits for
    `local_participant.publish_gate`. Test drivers below emit what the SDK would."""

    def __init__(self, behaviour: Any = None, present: list[FakeRemoteParticipant] | None = None):
        super().__init__()
        self.behaviour = behaviour
        self.present = present or []
        self.remote_participants: dict[str, FakeRemoteParticipant] = {}
        self.local_participant = FakeLocalParticipant("device")
        self.connected = False
        self.url = self.token = ""
        self.name = ""  # the SDK's: the joined room's name ("" here: the session falls back to the room asked for)
        self.packets_received: int | None = None  # the publisher transport's count in get_rtc_stats (None: no stats)
        self.options: Any = None
        self.text_handlers: dict[str, Callable[..., Any]] = {}
        self.byte_handlers: dict[str, Callable[..., Any]] = {}
        self.disconnects: list[int] = []
        if behaviour == "hold-publish":
            self.local_participant.publish_gate = asyncio.Event()

    async def connect(self, url: str, token: str, options: rtc.RoomOptions | None = None) -> None:
        self.url, self.token, self.options = url, token, options or rtc.RoomOptions()
        if self.behaviour == "hang":
            await asyncio.Event().wait()
        if isinstance(self.behaviour, BaseException):
            raise self.behaviour
        self.connected = True
        for p in self.present:
            self.remote_participants[p.identity] = p

    async def disconnect(self, *, reason: int = rtc.DisconnectReason.CLIENT_INITIATED) -> None:
        self.disconnects.append(reason)
        if not self.connected:
            return
        self.connected = False
        self.emit("disconnected", reason)

    def register_text_stream_handler(self, topic: str, handler: Callable[..., Any]) -> None:
        if topic in self.text_handlers:
            raise ValueError(f"handler for {topic} already set")
        self.text_handlers[topic] = handler

    def register_byte_stream_handler(self, topic: str, handler: Callable[..., Any]) -> None:
        if topic in self.byte_handlers:
            raise ValueError(f"handler for {topic} already set")
        self.byte_handlers[topic] = handler

    def isconnected(self) -> bool:
        return self.connected

    # -- drivers ------------------------------------------------------------------------------------------------

    @property
    def mic(self) -> FakePublication:
        return list(self.local_participant.track_publications.values())[-1]

    def agent_joins(self, identity: str = "agent-1", state: str | None = None, *, active: bool = True,
                    attributes: dict[str, str] | None = None) -> FakeRemoteParticipant:
        attrs = {"lk.agent.name": "test-agent", **(attributes or {})}
        if state:
            attrs["lk.agent.state"] = state
        p = FakeRemoteParticipant(identity, kind=AGENT, state=JOINED, attributes=attrs)
        self.remote_participants[identity] = p
        self.emit("participant_connected", p)
        if active:
            self.activate(p)
        return p

    def person_joins(self, identity: str = "guest-1") -> FakeRemoteParticipant:
        """Someone else in the room: a standard (non-agent) participant."""
        p = FakeRemoteParticipant(identity, kind=STANDARD, state=ACTIVE)
        self.remote_participants[identity] = p
        self.emit("participant_connected", p)
        self.emit("participant_active", p)
        return p

    def activate(self, p: FakeRemoteParticipant) -> None:
        p.state = ACTIVE
        self.emit("participant_active", p)

    def set_agent_state(self, p: FakeRemoteParticipant, state: str) -> None:
        p.attributes["lk.agent.state"] = state
        self.emit("participant_attributes_changed", {"lk.agent.state": state}, p)

    def session_message(self, sender: str, data: bytes, gate: asyncio.Event | None = None) -> FakeByteReader:
        """One `lk.agent.session` message (a serialized AgentSessionMessage) streamed by `sender`."""
        reader = FakeByteReader(data, gate=gate)
        self.byte_handlers["lk.agent.session"](reader, sender)
        return reader

    def agent_subscribes_mic(self) -> None:
        self.emit("local_track_subscribed", self.mic.track)

    def participant_leaves(self, p: FakeRemoteParticipant, reason: int = rtc.DisconnectReason.UNKNOWN_REASON) -> None:
        p.disconnect_reason = reason
        self.remote_participants.pop(p.identity, None)
        self.emit("participant_disconnected", p)

    def publish_agent_audio(self, p: FakeRemoteParticipant) -> FakeTrack:
        track = FakeTrack(f"TR_{next(_sids):04d}")
        pub = type("RemotePub", (), {"sid": track.sid, "track": track})()
        p.track_publications[track.sid] = pub
        self.emit("track_subscribed", track, pub, p)
        return track

    def full_restart(self) -> FakePublication:
        """What rust-sdks does on a full restart: participants reported gone, reconnecting, mic republished with
        a NEW SID, participants back (from the new join response), reconnected."""
        agents = list(self.remote_participants.values())
        for p in agents:
            self.participant_leaves(p)
        self.emit("reconnecting")
        old = self.mic
        lp = self.local_participant
        del lp.track_publications[old.sid]
        new = FakePublication(old.track, old.source)
        lp.track_publications[new.sid] = new
        for p in agents:
            self.remote_participants[p.identity] = p
            self.emit("participant_connected", p)
        self.emit("local_track_republished", new, old.sid)
        self.emit("reconnected")
        return new

    async def get_rtc_stats(self) -> rtc.RtcStats:
        from livekit.rtc import stats

        if self.packets_received is None:
            raise RuntimeError("the room isn't connected")
        transport = stats.RtcStats(transport=stats.RtcStats.Transport(
            transport=stats.TransportStats(packets_received=self.packets_received)))
        return rtc.RtcStats(publisher_stats=[transport], subscriber_stats=[])

    def drop(self, reason: int) -> None:
        """The SDK gave up (or the server ended us)."""
        self.connected = False
        self.emit("disconnected", reason)


class Rooms:
    """room_factory: hands out scripted FakeRooms in order (then plain ones) and keeps them."""

    def __init__(self, *behaviours: Any, present: list[FakeRemoteParticipant] | None = None):
        self.behaviours = list(behaviours)
        self.present = present
        self.made: list[FakeRoom] = []

    def __call__(self) -> FakeRoom:
        behaviour = self.behaviours.pop(0) if self.behaviours else None
        room = FakeRoom(behaviour, present=self.present if not self.made else None)
        self.made.append(room)
        return room

    @property
    def last(self) -> FakeRoom:
        return self.made[-1]


# ---- tokens -----------------------------------------------------------------------------------------------------


def fake_jwt(nbf: float, exp: float, **claims: Any) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'nbf': nbf, 'exp': exp, **claims})}.c2lnbmF0dXJl"


class FakeTokens:
    """A token source that records requests; `errors` are raised first, in order."""

    def __init__(self, *errors: Exception, now: float = 1_000_000.0, ttl: float = 600.0):
        self.errors = list(errors)
        self.requests: list[TokenRequest] = []
        self.now = now
        self.ttl = ttl

    async def fetch(self, request: TokenRequest) -> Credentials:
        self.requests.append(request)
        if self.errors:
            raise self.errors.pop(0)
        token = fake_jwt(self.now - 10, self.now + self.ttl, n=len(self.requests))
        return Credentials("wss://livekit.test", token)
