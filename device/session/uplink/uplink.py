"""The uplink: one reader of the mic ring, routed chunk by chunk to a buffer, the pre-connect stream, or live.

From the session's mark, every chunk the reader yields goes to exactly one place (`routing.Route`); where the
route goes next is the pure `routing.decide`, and the steps it names are carried out here, under one lock:

    BUFFER  — no agent yet: kept in a bounded buffer (oldest audio dropped past the cap)
    STREAM  — LiveKit's pre-connect protocol: a byte stream on `lk.agent.pre-connect-audio-buffer` to the agent,
              attributes sampleRate / channels / trackId (= the mic publication SID), raw int16 LE PCM. Opened
              when the SID exists AND an active agent is present; appended to until the agent subscribes to the
              mic (`local_track_subscribed`) — and, in push-to-talk, has answered `start_turn` (its input is off
              until then and a buffer completed earlier is discarded) — or 2.5 s pass (the agent drops a stream
              not finished within 3 s)
    LIVE    — the AudioSource behind the published mic track, batched (one FFI call per ~40 ms, not per 10 ms)
    DISCARD — pre-connect disabled and not yet published

Mute means mute: while muted no chunk goes anywhere; a mute drops what was not yet sent (the buffer, the pieces
waiting for a stream write or a live batch, the backlog a stream being opened was about to carry), counted as
dropped with the reason "muted"; an unmute takes effect at the ring's head, so audio captured while muted that the
pump reads late is skipped too. The live track itself is muted by the supervisor.

Because one task routes every chunk and control changes take the same lock, the stream's last sample and the
live track's first are adjacent ring indices: no gap, no overlap (`streams` and `live_starts` prove it). After a
full reconnect (new SID) the audio captured while disconnected, bounded by `resend_s`, is sent again the same way;
with pre-connect off, the live track goes on after any reconnect and what was held is dropped (and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from device.core.agent_contract import Topic
from device.session.clock import Clock, Timer, sleep, within
from device.session.ports import AudioReader
from device.session.status import UplinkStatus
from device.session.uplink.routing import Facts, Route, Step, decide
from device.session.uplink.user_speech import SpeechGate

if TYPE_CHECKING:
    from livekit import rtc

log = logging.getLogger("device.session.uplink.uplink")

TOPIC = Topic.PRECONNECT_AUDIO.value
STREAM_NAME = "pre-connect-audio"
STREAM_BUDGET_S = 2.5  # livekit-agents cancels a pre-connect stream not complete 3 s after it opened
# livekit-agents feeds a completed pre-connect buffer to the session's input only while that input is on, and a
# push-to-talk agent's end_turn turns it off: the end waits for the stream to be complete and this much after
END_AFTER_STREAM_S = 0.5
STREAM_WRITE_MS = 100  # append to the stream in ~100 ms pieces while waiting for the subscription
WRITE_PIECE_S = 0.5  # the buffered backlog goes out in pieces of at most this
LIVE_BATCH_MS = 40  # per-call FFI cost dominates capture_frame: batch 10 ms chunks
MAX_STEPS = 8  # a routing pass takes at most a few steps (hold → rebuffer → open → go live); more is a bug


@dataclass
class StreamRecord:
    """One pre-connect stream as sent: which SID, to whom, and the exact ring range of its samples."""

    track_id: str
    agent: str
    first: int | None = None  # ring index of the first sample sent
    samples: int = 0
    bytes: int = 0
    closed: str = ""  # why it closed: "subscribed", "deadline", "agent-left", "reconnecting", "detached", "error"

    @property
    def end(self) -> int | None:
        return None if self.first is None else self.first + self.samples


EVICTED_KEPT = 2048  # live pieces (~40 ms each) remembered past the re-send bound, to count what a dead link lost


class ChunkBuffer:
    """Chunks kept while no agent is there, at most `max_samples` (the oldest audio goes first)."""

    def __init__(self, max_samples: int):
        self.max_samples = max_samples
        self._chunks: deque[tuple[int, np.ndarray]] = deque()
        self.samples = 0
        self.overflowed = 0  # samples dropped at the cap, not yet reported (`take_overflow`)

    def append(self, first: int, samples: np.ndarray) -> int:
        """Keep a chunk; returns how many old samples were dropped to stay under the cap."""
        self._chunks.append((first, samples))
        self.samples += len(samples)
        return self._trim()

    def rebound(self, max_samples: int) -> int:
        """A new cap for the audio kept so far and to come (the newest stays); returns the samples dropped."""
        self.max_samples = max_samples
        return self._trim()

    def _trim(self) -> int:
        dropped = 0
        while self.samples > self.max_samples and self._chunks:
            head_first, head = self._chunks[0]
            excess = self.samples - self.max_samples
            if len(head) <= excess:
                self._chunks.popleft()
                self.samples -= len(head)
                dropped += len(head)
            else:
                self._chunks[0] = (head_first + excess, head[excess:])
                self.samples -= excess
                dropped += excess
        self.overflowed += dropped
        return dropped

    def take(self) -> list[tuple[int, np.ndarray]]:
        chunks = list(self._chunks)
        self.clear()
        return chunks

    def clear(self) -> int:
        dropped = self.samples
        self._chunks.clear()
        self.samples = 0
        return dropped

    def take_overflow(self) -> int:
        """Samples dropped at the cap since the last call."""
        overflowed, self.overflowed = self.overflowed, 0
        return overflowed


class Uplink:
    """Routes the session's mic audio (see the module docstring). Control methods are synchronous (called from
    room callbacks) and schedule one reconcile task; `run()` is the pump."""

    def __init__(
        self,
        reader: AudioReader,
        *,
        sample_rate: int,
        clock: Clock,
        preconnect: bool,
        max_buffer_s: float,
        resend_s: float,
        speech: SpeechGate | None = None,
        on_speech: Callable[[], None] | None = None,
        start: int | None = None,
    ):
        """`speech` judges each chunk (`uplink/user_speech.py`); `on_speech` hears about it, at most twice a
        second while the user speaks. `start`: the ring index the session's audio was asked from (its mark); a
        reader that can only begin later (the ring let the mark go while the session waited to start) has the
        missing span counted as dropped, with the reason, instead of starting later in silence."""
        self.reader = reader
        self.rate = sample_rate
        self.clock = clock
        self.preconnect = preconnect
        self.max_buffer_s = max_buffer_s
        self.resend_s = resend_s
        self.speech = speech
        self.on_speech = on_speech
        self.route = Route.BUFFER if preconnect else Route.DISCARD
        self.buffer = ChunkBuffer(int(max_buffer_s * sample_rate))
        self.muted = False
        self._mutes = 0  # how many times muted: a step that awaits checks it did not change under it
        self._resume_at = 0  # ring index the last unmute took effect at: nothing before it is sent
        # what the room side told us
        self._lp: rtc.LocalParticipant | None = None
        self._source: rtc.AudioSource | None = None
        self.sid: str | None = None
        self.agent: str | None = None
        self.subscribed = False
        self._reconnecting = False
        self._republished = False
        self._after_reconnect = False
        self._unheard_since: float | None = None
        # the live audio of the last `resend_s`, as (sent at, first ring index, samples): held again after a cut
        # the SDK noticed late
        self._sent: deque[tuple[float, int, np.ndarray]] = deque()
        self._sent_n = 0
        self._evicted: deque[tuple[float, int]] = deque(maxlen=EVICTED_KEPT)  # (sent at, samples) past the bound
        self.turn_pending = False  # push-to-talk: start_turn sent (or queued) and not answered yet
        # the open stream
        self._writer_agent: str | None = None
        self._writer: rtc.ByteStreamWriter | None = None
        self._deadline: Timer | None = None
        self._expired = False
        self._stream_closed_at: float | None = None
        self._off_stream = asyncio.Event()  # set while the route is not STREAM (`stream_delivered` waits on it)
        self._off_stream.set()
        self._pend_stream: list[np.ndarray] = []
        self._pend_stream_n = 0
        self._pend_live: list[np.ndarray] = []
        self._pend_live_first = 0
        self._pend_live_n = 0
        # evidence (status, tests)
        self.streams: list[StreamRecord] = []
        self.live_starts: list[int] = []  # ring index of the first live sample after each switch to LIVE
        self._live_start_pending = False
        self.bytes_sent = 0
        self.dropped_samples = 0
        self.drop_reason = ""
        self.gaps = 0
        self._next_index: int | None = start
        self._first_chunk = True
        self._last_speech: int | None = None
        # machinery
        self._lock = asyncio.Lock()
        self._kick_task: asyncio.Task[None] | None = None
        self._kick_again = False
        self._closed = False

    # -- control (synchronous: called from room callbacks on the loop) ----------------------------------------

    def attach(self, local_participant: rtc.LocalParticipant, source: rtc.AudioSource, sid: str) -> None:
        """A connect attempt published the mic: route to the stream once an agent is there (or live at once)."""
        self._lp, self._source, self.sid = local_participant, source, sid
        self.subscribed = False
        self._reconnecting = self._republished = self._after_reconnect = False
        if not self.preconnect:
            self._set_route(Route.LIVE)
        self._kick()

    def set_agent(self, identity: str | None) -> None:
        """The active agent (None when it left)."""
        self.agent = identity
        self._kick()

    def track_subscribed(self, sid: str) -> None:
        if sid == self.sid:
            self.subscribed = True
            self._kick()

    def set_turn_pending(self, pending: bool) -> None:
        """Push-to-talk: a start_turn is on its way to the agent (True) or was answered, failed or dropped."""
        if pending == self.turn_pending:
            return
        self.turn_pending = pending
        if not pending and self.route is Route.STREAM and self.subscribed:
            log.info("pre-connect stream: the agent took the turn, going live")
        self._kick()

    def reconnecting(self, *, unheard_since: float | None = None) -> None:
        """The SDK lost the link. `unheard_since`: when the server was last heard on the mic's connection
        (link_watch.py): what was sent live after it may never have arrived, and is held again."""
        self._reconnecting = True
        self._republished = False
        self._unheard_since = unheard_since
        self._kick()

    def republished(self, new_sid: str) -> None:
        """A full restart re-issued the mic's SID: the agent needs a new buffer naming it."""
        self.sid = new_sid
        self.subscribed = False
        self._republished = True
        self._kick()

    def reconnected(self) -> None:
        self._reconnecting = False
        self._kick()

    async def stream_delivered(self) -> None:
        """Return once a pre-connect stream under way is complete and the agent has had END_AFTER_STREAM_S to feed
        it to its input (at once when no stream is open or just closed); bounded by the stream's own budget."""
        if self.route is Route.STREAM:
            with contextlib.suppress(TimeoutError):
                await within(self.clock, self._off_stream.wait(), STREAM_BUDGET_S + END_AFTER_STREAM_S)
        if self._stream_closed_at is not None:
            wait = self._stream_closed_at + END_AFTER_STREAM_S - self.clock.now()
            if wait > 0:
                await sleep(self.clock, wait)

    def drop_buffer(self, reason: str) -> None:
        if self.route is Route.BUFFER:
            self._report_overflow()
            dropped = self.buffer.clear()
            self.dropped_samples += dropped
            self.drop_reason = reason
            log.info("pre-connect buffer dropped reason=%r samples=%d", reason, dropped)

    def set_muted(self, muted: bool) -> None:
        """Muted: what was not yet sent is dropped (counted) and nothing is sent. Unmuted: audio resumes from
        the ring's head, whatever the pump has still to read."""
        if muted == self.muted:
            return
        self.muted = muted
        if not muted:
            self._resume_at = self.reader.head()
            return
        self._mutes += 1
        self._report_overflow()
        pending = self.buffer.clear() + self._pend_stream_n + self._pend_live_n
        self._pend_stream.clear()
        self._pend_stream_n = 0
        self._pend_live.clear()
        self._pend_live_n = 0
        self._forget_sent()  # what went out live before the mute is never held again: nothing leaves while muted
        self._drop_muted(pending)

    def _drop_muted(self, samples: int) -> None:
        if samples:
            self.dropped_samples += samples
            self.drop_reason = "muted"
            log.info("audio not yet sent dropped reason='muted' ms=%d", samples * 1000 // self.rate)

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """The pump: every chunk the reader yields is routed exactly once."""
        try:
            async for first, samples in self.reader:
                if self._closed:
                    break
                self._observe(first, samples)
                async with self._lock:
                    await self._route_chunk(first, samples)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("uplink stopped: the mic reader failed")

    async def detach(self, *, keep_buffering: bool, reason: str = "detached") -> None:
        """The attempt is being torn down: close the pre-connect writer FIRST (before the source and the room)."""
        async with self._lock:
            if self.route is Route.STREAM:
                await self._close_stream("detached", go_live=False)
            if not keep_buffering:
                self.drop_buffer(reason)  # audio no agent will hear: say so (log, dropped_ms) before letting it go
            self._pend_live.clear()
            self._pend_live_n = 0
            self._lp = self._source = self.sid = None
            self.agent = None
            self.subscribed = False
            if keep_buffering and self.preconnect:
                # a retry follows: keep what the user said while reconnecting, and says meanwhile (bounded), for
                # the next agent
                self._rebuffer(self.resend_s)
            else:
                self._set_route(Route.DISCARD)

    async def aclose(self) -> None:
        self._closed = True
        if self._kick_task is not None:
            self._kick_task.cancel()
            await asyncio.gather(self._kick_task, return_exceptions=True)
        await self.detach(keep_buffering=False)
        self.reader.close()

    def snapshot(self) -> UplinkStatus:
        return UplinkStatus(
            route=str(self.route),
            buffered_ms=int(self.buffer.samples * 1000 / self.rate),
            bytes_sent=self.bytes_sent,
            streams=len(self.streams),
            last_stream_closed=self.streams[-1].closed if self.streams else "",
            dropped_ms=int(self.dropped_samples * 1000 / self.rate),
            drop_reason=self.drop_reason,
        )

    # -- the pump's side --------------------------------------------------------------------------------------

    def _observe(self, first: int, samples: np.ndarray) -> None:
        expected, opening = self._next_index, self._first_chunk
        self._first_chunk = False
        if expected is not None and first != expected and not (opening and first < expected):
            # (a reader may open a little before an unaligned mark: it rounds back to a whole 10 ms frame)
            lost = max(0, first - expected)
            self.dropped_samples += lost
            if opening:
                self.drop_reason = ("the session's mark left the ring before the session started "
                                    "(audio.ring_seconds is shorter than the wait)")
                log.warning("session audio begins after its mark: the mark left the ring before the session "
                            "started lost_ms=%d mark=%d first=%d", lost * 1000 // self.rate, expected, first)
            else:
                self.gaps += 1
                if lost:
                    self.drop_reason = "the mic reader fell behind the ring"
                log.warning("mic reader gap expected=%d got=%d lost_ms=%d", expected, first,
                            lost * 1000 // self.rate)
        self._next_index = first + len(samples)
        if self._silenced(first, samples) or self.on_speech is None or self.speech is None:
            return
        heard = self.speech.heard(first, samples)  # every chunk: a voice activity detector keeps state
        # at most two reports a second, counted in samples so tests need no wall clock
        due = self._last_speech is None or first - self._last_speech >= self.rate // 2
        if due and heard:
            self._last_speech = first
            self.on_speech()

    def _silenced(self, first: int, samples: np.ndarray) -> bool:
        """Muted now, or captured entirely before the last unmute."""
        return self.muted or first + len(samples) <= self._resume_at

    async def _route_chunk(self, first: int, samples: np.ndarray) -> None:
        if self._silenced(first, samples) or self.route is Route.DISCARD:
            return
        if first < self._resume_at:  # the unmute fell inside this chunk: its muted head is not sent
            samples = samples[self._resume_at - first :]
            first = self._resume_at
        if self.route is Route.BUFFER:
            self.dropped_samples += self.buffer.append(first, samples)
        elif self.route is Route.STREAM:
            self._stream_append(first, samples)
            if self._pend_stream_n >= self.rate * STREAM_WRITE_MS // 1000:
                await self._stream_flush()
        else:
            if not self._pend_live:
                self._pend_live_first = first
            self._pend_live.append(samples)
            self._pend_live_n += len(samples)
            if self._pend_live_n >= self.rate * LIVE_BATCH_MS // 1000:
                await self._live_flush()

    # -- routes -----------------------------------------------------------------------------------------------

    def _set_route(self, route: Route) -> None:
        if route is not self.route:
            log.debug("uplink route %s -> %s", self.route, route)
            if self.route is Route.LIVE:
                self._forget_sent()  # only audio sent live until a hold is held again (`_unheard`)
            self.route = route
            self._live_start_pending = route is Route.LIVE
            if route is Route.STREAM:
                self._off_stream.clear()
            else:
                self._off_stream.set()

    def _kick(self) -> None:
        """Re-evaluate the route soon, in one task at a time (control calls come from sync callbacks)."""
        if self._closed:
            return
        if self._kick_task is not None and not self._kick_task.done():
            self._kick_again = True
            return
        self._kick_task = asyncio.get_running_loop().create_task(self._reconcile_loop())

    async def _reconcile_loop(self) -> None:
        while True:
            self._kick_again = False
            async with self._lock:
                await self._reconcile()
            if not self._kick_again:
                return

    def facts(self) -> Facts:
        return Facts(
            route=self.route, attached=self._lp is not None, preconnect=self.preconnect, sid=bool(self.sid),
            agent=self.agent, stream_agent=self._writer_agent, subscribed=self.subscribed, expired=self._expired,
            reconnecting=self._reconnecting, republished=self._republished, held=self._after_reconnect,
            turn_pending=self.turn_pending,
        )

    async def _reconcile(self) -> None:
        for _ in range(MAX_STEPS):
            step = decide(self.facts())
            if step is None:
                return
            await self._take(step)
        log.error("uplink routing did not settle after %d steps facts=%s", MAX_STEPS, self.facts())

    def _live_after_reconnect(self, reason: str, *, said_if_empty: bool) -> None:
        """Drop what was held while reconnecting and go live again (a resume says so even when nothing was held)."""
        self._after_reconnect = False
        self._report_overflow()
        dropped = self.buffer.clear()
        if dropped or said_if_empty:
            self.dropped_samples += dropped
            self.drop_reason = reason
            # say so: these are the user's words from the reconnect, and no agent will hear them
            log.info("audio captured while reconnecting dropped reason=%r ms=%d", self.drop_reason,
                     dropped * 1000 // self.rate)
        self._set_route(Route.LIVE)

    def _rebuffer(self, bound_s: float) -> None:
        """Buffer from now on, at most `bound_s`, keeping what is already buffered (newest first): a reconnect
        or a retry must not throw away the words held so far."""
        self.dropped_samples += self.buffer.rebound(int(bound_s * self.rate))
        self._set_route(Route.BUFFER)

    def _unheard(self) -> list[tuple[int, np.ndarray]]:
        """The live audio sent after the server was last heard (the link was dead before the SDK knew), to be held
        again; what of it is past the re-send bound is counted and logged as dropped. Empty unless the route was
        live until now (leaving it forgets what was sent)."""
        since, self._unheard_since = self._unheard_since, None
        sent, evicted = list(self._sent), list(self._evicted)
        self._forget_sent()
        if since is None:
            return []
        again = [(first, samples) for at, first, samples in sent if at > since]
        if again:
            log.info("audio sent live since the server was last heard held again ms=%d unheard_s=%.1f",
                     sum(len(s) for _, s in again) * 1000 // self.rate, self.clock.now() - since)
        lost = sum(n for at, n in evicted if at > since)
        if lost:
            self.dropped_samples += lost
            self.drop_reason = (f"sent live after the server was last heard, longer ago than the "
                                f"{self.resend_s:g} s re-send bound")
            log.info("audio sent into a dead link dropped reason=%r ms=%d", self.drop_reason, lost * 1000 // self.rate)
        return again

    def _forget_sent(self) -> None:
        self._sent.clear()
        self._sent_n = 0
        self._evicted.clear()

    def _report_overflow(self) -> None:
        """Say (once per buffer sent or dropped) how much of the oldest audio its cap let go, and why."""
        overflowed = self.buffer.take_overflow()
        if overflowed:
            bound_s = self.buffer.max_samples / self.rate
            self.drop_reason = f"older than the {bound_s:g} s the buffer keeps"
            log.info("audio buffered dropped reason=%r ms=%d", self.drop_reason, overflowed * 1000 // self.rate)

    async def _take(self, step: Step) -> None:
        match step:
            case Step.HOLD:
                # the connection is down: keep what the user says (bounded) for a re-send after a full restart,
                # after what was sent live since the server was last heard and what had not gone out yet
                if self.route is Route.STREAM:
                    await self._close_stream("reconnecting", go_live=False)
                held = self._unheard()
                if self._pend_live:
                    held.append((self._pend_live_first, np.concatenate(self._pend_live)))
                self._pend_live.clear()
                self._pend_live_n = 0
                self._rebuffer(self.resend_s)
                for first, samples in held:
                    self.dropped_samples += self.buffer.append(first, samples)
                self._after_reconnect = True
            case Step.RESUME_LIVE:
                # resumed with the same SID and the agent still subscribed: nothing to re-send, the live track goes on
                self._live_after_reconnect("resumed: the live track continued", said_if_empty=True)
            case Step.LIVE_AGAIN:
                # pre-connect off: no stream can carry what was held, and the live track must not wait for a
                # subscription that may never be repeated (a resume) or come late (a full restart)
                self._republished = False
                self._live_after_reconnect("reconnected: pre-connect off, the live track continued",
                                           said_if_empty=False)
            case Step.REBUFFER:
                # the SDK republished after `reconnected`: back to buffering until the agent is there for the new SID
                self._rebuffer(self.resend_s)
            case Step.OPEN_STREAM:
                await self._open_stream()
            case Step.ABANDON:
                await self._close_stream("agent-left", go_live=False)
                self._rebuffer(self.max_buffer_s)
            case Step.GO_LIVE:
                await self._close_stream("subscribed", go_live=True)
            case Step.GO_LIVE_LATE:
                await self._close_stream("deadline", go_live=True)

    async def _open_stream(self) -> None:
        assert self._lp is not None and self.sid is not None and self.agent is not None  # decide() checked
        mutes = self._mutes
        self._report_overflow()
        chunks = self.buffer.take()
        attributes = {"sampleRate": str(self.rate), "channels": "1", "trackId": self.sid}
        record = StreamRecord(track_id=self.sid, agent=self.agent)
        try:
            self._writer = await self._lp.stream_bytes(
                STREAM_NAME,
                mime_type="application/octet-stream",
                attributes=attributes,
                destination_identities=[self.agent],
                topic=TOPIC,
            )
        except Exception as e:
            log.warning("pre-connect stream could not open error=%s: going live without it", e)
            self.dropped_samples += sum(len(c) for _, c in chunks)
            self.drop_reason = f"stream failed to open: {e}"
            self._after_reconnect = self._republished = False  # given up on a buffer for this SID: live it is
            self._set_route(Route.LIVE)
            return
        self._writer_agent = self.agent
        self.streams.append(record)
        self._expired = False
        self._after_reconnect = self._republished = False
        self._deadline = self.clock.call_later(STREAM_BUDGET_S, self._stream_expired)
        self._set_route(Route.STREAM)
        log.info("pre-connect stream open agent=%s track=%s buffered_ms=%d", self.agent, self.sid,
                 sum(len(c) for _, c in chunks) * 1000 // self.rate)
        piece = int(WRITE_PIECE_S * self.rate)
        for i, (first, samples) in enumerate(chunks):
            if self._mutes != mutes:  # muted while the stream opened or a piece went out: the rest is not sent
                self._drop_muted(sum(len(c) for _, c in chunks[i:]))
                break
            self._stream_append(first, samples)
            if self._pend_stream_n >= piece:
                await self._stream_flush()
        await self._stream_flush()

    def _stream_expired(self) -> None:
        self._expired = True
        self._kick()

    def _stream_append(self, first: int, samples: np.ndarray) -> None:
        record = self.streams[-1]
        if record.first is None:
            record.first = first
        self._pend_stream.append(samples)
        self._pend_stream_n += len(samples)

    async def _stream_flush(self) -> None:
        if not self._pend_stream_n or self._writer is None:
            return
        data = np.concatenate(self._pend_stream).astype("<i2", copy=False).tobytes()
        record = self.streams[-1]
        record.samples += self._pend_stream_n
        self._pend_stream.clear()
        self._pend_stream_n = 0
        try:
            await self._writer.write(data)
        except Exception as e:
            log.warning("pre-connect stream write failed error=%s", e)
            record.closed = "error"
            return
        record.bytes += len(data)
        self.bytes_sent += len(data)

    async def _close_stream(self, why: str, *, go_live: bool) -> None:
        await self._stream_flush()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        writer, self._writer = self._writer, None
        self._stream_closed_at = self.clock.now()
        record = self.streams[-1]
        record.closed = record.closed or why
        if writer is not None:
            try:
                await writer.aclose()
            except Exception as e:
                log.warning("pre-connect stream close failed error=%s", e)
        log.info("pre-connect stream closed reason=%s track=%s samples=%d bytes=%d", why, record.track_id,
                 record.samples, record.bytes)
        self._set_route(Route.LIVE if go_live else Route.BUFFER)

    def _remember_sent(self, first: int, samples: np.ndarray) -> None:
        self._sent.append((self.clock.now(), first, samples))
        self._sent_n += len(samples)
        while self._sent and self._sent_n - len(self._sent[0][2]) >= int(self.resend_s * self.rate):
            at, _, old = self._sent.popleft()
            self._sent_n -= len(old)
            self._evicted.append((at, len(old)))

    async def _live_flush(self) -> None:
        from livekit import rtc

        if not self._pend_live_n or self._source is None:
            return
        n = self._pend_live_n
        data = np.concatenate(self._pend_live).astype("<i2", copy=False).tobytes()
        first = self._pend_live_first
        self._pend_live.clear()
        self._pend_live_n = 0
        if self._live_start_pending:
            self._live_start_pending = False
            self.live_starts.append(first)
        self._remember_sent(first, np.frombuffer(data, dtype="<i2"))
        try:
            await self._source.capture_frame(rtc.AudioFrame(data, self.rate, 1, n))
        except Exception as e:
            log.warning("mic capture failed error=%s", e)
