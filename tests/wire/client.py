"""A small client driven by the REAL livekit SDK, run as a subprocess inside the test namespace.

It connects, publishes a microphone track (`preconnect_buffer=True`) fed with a deterministic test signal,
buffers that signal from the start, and once the mic SID exists and an active agent is present, sends the
buffer as a byte stream on `lk.agent.pre-connect-audio-buffer` (48 kHz mono int16, attributes sampleRate /
channels / trackId) and keeps appending until `local_track_subscribed`; only then does it feed the track
live, continuing exactly where the buffer stopped. It prints one JSON object per line for every event, and
measures the agent's audio it receives. `source_signal()` is imported by the tests to correlate recordings.

    python -m tests.wire.client --url ws://10.231.1.1:7880 --token JWT --seconds 6 [--no-publish] [--ptt]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import numpy as np

RATE = 48000
BLOCK = 480  # 10 ms
TOPIC = "lk.agent.pre-connect-audio-buffer"


LIVE_LEAD_S = 0.1


def source_signal(seconds: float, seed: int = 7) -> np.ndarray:
    """Band-limited noise in 0.9 s bursts, 0.9 s of near-silence between them (int16, 48 kHz mono).

    The quiet parts carry a faint noise floor (never digital zero, well under the agent's speech level), so
    every part of the signal can be found again by correlation.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    noise = rng.standard_normal(n + 64)
    smooth = np.convolve(noise, np.ones(6) / 6, mode="same")[:n]  # keep it under ~8 kHz, Opus-friendly
    t = np.arange(n) / RATE
    gate = ((t % 1.8) < 0.9).astype(np.float64)
    ramp = np.minimum(1.0, np.minimum((t % 1.8) / 0.01, np.maximum(0.0, 0.9 - (t % 1.8)) / 0.01))
    floor = rng.standard_normal(n) * 40
    return (np.clip(smooth * 9000 * gate * ramp + floor, -32000, 32000)).astype(np.int16)


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": round(time.monotonic(), 3), **fields}), flush=True)


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        from livekit import rtc

        self.rtc = rtc
        self.args = args
        self.room: Any = None  # made in run(): a Room binds to the loop running when it is created
        self.signal = source_signal(args.seconds)
        self.position = 0  # next source sample to capture
        self.mic_sid = ""
        self.agent: Any = None
        self.writer: Any = None
        self.buffer = bytearray()  # pre-connect audio not yet written to the stream
        self.buffering = True
        self.buffered_samples = 0
        self.subscribed = asyncio.Event()
        self.agent_frames = 0
        self.agent_loud_frames = 0
        self.agent_peak_rms = 0.0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.rpc_done = False
        self.ended = False  # the room disconnected: stop capturing

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def wire_events(self) -> None:
        room, rtc = self.room, self.rtc

        @room.on("participant_connected")
        def _connected(p: Any) -> None:
            emit("participant_connected", identity=p.identity, kind=rtc.ParticipantKind.Name(p.kind))
            self.consider_agent(p)

        @room.on("participant_active")
        def _active(p: Any) -> None:
            emit("participant_active", identity=p.identity)
            self.consider_agent(p)

        @room.on("participant_disconnected")
        def _gone(p: Any) -> None:
            emit("participant_disconnected", identity=p.identity)
            if self.agent is not None and p.identity == self.agent.identity:
                self.agent = None

        @room.on("participant_attributes_changed")
        def _attrs(changed: dict[str, str], p: Any) -> None:
            if "lk.agent.state" in changed:
                emit("agent_state", identity=p.identity, state=changed["lk.agent.state"])
                if changed["lk.agent.state"] == "listening" and self.args.rpc and not self.rpc_done:
                    self.rpc_done = True
                    self.spawn(self.call_rpcs(p.identity))
            self.consider_agent(p)

        @room.on("local_track_subscribed")
        def _local_sub(track: Any) -> None:
            emit("local_track_subscribed", sid=track.sid)
            self.subscribed.set()

        @room.on("local_track_republished")
        def _republished(publication: Any, previous_sid: str) -> None:
            # A full rejoin: the old buffer named a SID that no longer exists. Buffer again for the new one.
            emit("local_track_republished", sid=publication.sid, previous_sid=previous_sid)
            self.mic_sid = publication.sid
            self.restart_buffering()

        @room.on("track_subscribed")
        def _track(track: Any, publication: Any, p: Any) -> None:
            emit("track_subscribed", sid=publication.sid, identity=p.identity, kind=rtc.TrackKind.Name(track.kind))
            if track.kind == rtc.TrackKind.KIND_AUDIO:
                self.spawn(self.listen(track))

        @room.on("reconnecting")
        def _reconnecting() -> None:
            emit("reconnecting")

        @room.on("reconnected")
        def _reconnected() -> None:
            emit("reconnected")

        @room.on("disconnected")
        def _disconnected(reason: Any) -> None:
            emit("disconnected", reason=rtc.DisconnectReason.Name(reason) if isinstance(reason, int) else str(reason))
            self.ended = True

        @room.on("token_refreshed")
        def _token() -> None:
            emit("token_refreshed")

        def _text(reader: Any, identity: str) -> None:
            async def read() -> None:
                text = await reader.read_all()
                emit("text_stream", topic=reader.info.topic, identity=identity, text=text,
                     attributes=dict(reader.info.attributes))

            self.spawn(read())

        room.register_text_stream_handler("lk.transcription", _text)

    def restart_buffering(self) -> None:
        if not self.args.preconnect:
            return
        self.buffering, self.writer, self.buffered_samples = True, None, 0
        self.buffer = bytearray()
        self.subscribed.clear()
        self.maybe_open_stream()

    async def call_rpcs(self, identity: str) -> None:
        for method in self.args.rpc.split(","):
            try:
                payload = await self.room.local_participant.perform_rpc(
                    destination_identity=identity, method=method, payload="", response_timeout=5.0)
                emit("rpc_result", method=method, payload=payload, error=None)
            except self.rtc.RpcError as e:
                emit("rpc_result", method=method, payload=None, error=e.code)
            await asyncio.sleep(0.5)

    def consider_agent(self, p: Any) -> None:
        rtc = self.rtc
        if p.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            return
        if p.attributes.get("lk.publish_on_behalf"):
            return
        if self.agent is None or self.agent.identity != p.identity:
            self.agent = p
        self.maybe_open_stream()

    def agent_active(self) -> bool:
        rtc = self.rtc
        return self.agent is not None and self.agent.state == rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE

    def maybe_open_stream(self) -> None:
        if not self.args.preconnect or self.writer is not None or not self.buffering:
            return
        if not self.mic_sid or not self.agent_active():
            return
        self.writer = "opening"
        self.spawn(self.open_stream(self.mic_sid, self.agent.identity))

    async def open_stream(self, track_sid: str, agent_identity: str) -> None:
        attributes = {"sampleRate": str(RATE), "channels": "1", "trackId": track_sid}
        writer = await self.room.local_participant.stream_bytes(
            "preconnect-audio", topic=TOPIC, mime_type="application/octet-stream", attributes=attributes,
            destination_identities=[agent_identity])
        self.writer = writer
        emit("preconnect_opened", track_sid=track_sid, agent=agent_identity)
        await self.flush_buffer()

    async def flush_buffer(self) -> None:
        if self.writer in (None, "opening") or not self.buffer:
            return
        data, self.buffer = bytes(self.buffer), bytearray()
        await self.writer.write(data)

    async def listen(self, track: Any) -> None:
        rtc = self.rtc
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
        try:
            async for event in stream:
                samples = np.frombuffer(event.frame.data, dtype=np.int16)
                rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0
                self.agent_frames += 1
                self.agent_peak_rms = max(self.agent_peak_rms, rms)
                if rms > 300:
                    self.agent_loud_frames += 1
                    if self.agent_loud_frames == 1:
                        emit("agent_audio_heard", rms=round(rms, 1))
        finally:
            await stream.aclose()

    async def run(self) -> int:
        rtc = self.rtc
        self.room = rtc.Room()
        self.wire_events()
        try:
            await asyncio.wait_for(self.room.connect(self.args.url, self.args.token), self.args.connect_timeout)
        except rtc.ConnectError as e:
            emit("connect_error", message=str(e))
            return 2
        except TimeoutError:
            emit("connect_error", message="timeout")
            return 2
        lp = self.room.local_participant
        emit("connected", sid=lp.sid, identity=lp.identity, room_sid=await self.room.sid)
        for p in self.room.remote_participants.values():
            self.consider_agent(p)
        if self.args.connect_only:
            await asyncio.sleep(self.args.seconds)
            await self.room.disconnect()
            emit("done")
            return 0
        source = rtc.AudioSource(RATE, 1, queue_size_ms=200)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE,
                                          preconnect_buffer=self.args.preconnect)
        capture = asyncio.ensure_future(self.capture(source))
        publication = await lp.publish_track(track, options)
        self.mic_sid = publication.sid
        emit("published", sid=publication.sid)
        self.maybe_open_stream()
        await capture
        emit("agent_audio", frames=self.agent_frames, loud_frames=self.agent_loud_frames,
             peak_rms=round(self.agent_peak_rms, 1))
        await source.aclose()
        if not self.ended:
            await self.room.disconnect()
        emit("done")
        return 0

    async def capture(self, source: Any) -> None:
        """Real-time capture of the test signal: into the buffer until subscribed, then into the track."""
        rtc = self.rtc
        start = time.monotonic()
        blocks = len(self.signal) // BLOCK
        for i in range(blocks):
            if self.ended:
                return
            # Live frames go out LIVE_LEAD_S ahead of real time: the source's queue (200 ms) then rides out a stall
            # of this process on a loaded machine, where an empty queue would have WebRTC send silence mid-signal.
            lead = 0.0 if self.buffering and self.args.preconnect else LIVE_LEAD_S
            delay = start + (i + 1) * BLOCK / RATE - lead - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            block = self.signal[i * BLOCK:(i + 1) * BLOCK]
            if self.buffering and self.args.preconnect:
                self.buffer += block.astype("<i2").tobytes()
                self.buffered_samples += BLOCK
                await self.flush_buffer()
                if self.subscribed.is_set() and self.writer not in (None, "opening"):
                    await self.writer.aclose()
                    self.buffering = False
                    emit("preconnect_closed", samples=self.buffered_samples)
                continue
            frame = rtc.AudioFrame(block.tobytes(), RATE, 1, BLOCK)
            await source.capture_frame(frame)
        if self.buffering and self.writer not in (None, "opening"):
            await self.writer.aclose()
            emit("preconnect_closed", samples=self.buffered_samples, reason="source_ended")
        await asyncio.sleep(self.args.linger)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--seconds", type=float, default=6.0, help="how long the test signal plays")
    p.add_argument("--connect-only", action="store_true")
    p.add_argument("--linger", type=float, default=0.0, help="stay connected this long after the signal ends")
    p.add_argument("--no-preconnect", dest="preconnect", action="store_false")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--rpc", default="", help="comma-separated RPC methods to call on the agent once it listens")
    p.add_argument("--debug", action="store_true", help="the SDK's debug log on stderr")
    args = p.parse_args()
    if args.debug:
        import faulthandler
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
        faulthandler.dump_traceback_later(8, exit=False)
    return asyncio.run(Client(args).run())


if __name__ == "__main__":
    code = main()
    # As the daemon does (device/daemon/app.py): the SDK's native threads can abort the interpreter while it
    # finalizes (a tokio worker calling back into Python: "panic in a function that cannot unwind", SIGABRT),
    # seen twice in a loaded full run after everything had been said. All is closed and flushed: leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
