"""One client's single peer connection on the stub's side (aiortc): answers, trickle, data channels, media.

In `/rtc/v1` mode the client always offers (publisher PC); the stub answers. Media the client publishes arrives
as aiortc tracks; media the stub sends (the agent's voice) rides on the recvonly audio sections the client adds
after a `MediaSectionsRequirement`. Candidates are stripped from the answer and trickled, as the real SFU does.
aiortc has no ICE restart: a resume only survives while the old candidate pair still works.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp
from livekit.protocol import models

log = logging.getLogger("tests.stubsfu.peer")

_PPID_BINARY = 53  # SCTP payload protocol ids of WebRTC data channels (RFC 8831)
_PPID_BINARY_EMPTY = 57

AudioCallback = Callable[[str, object], Awaitable[None]]  # (client track id from msid, av.AudioFrame)
PacketCallback = Callable[[models.DataPacket, str], None]  # (packet, data channel label)


def split_candidates(sdp: str) -> tuple[str, list[dict[str, object]]]:
    """Remove `a=candidate` / `a=end-of-candidates` lines; return them as candidateInit dicts (mid, index)."""
    kept: list[str] = []
    found: list[dict[str, object]] = []
    mline = -1
    mid = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            mline += 1
            mid = ""
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:"):].strip()
        if line.startswith("a=candidate:"):
            found.append({"candidate": line[2:], "sdpMid": mid, "sdpMLineIndex": mline})
            continue
        if line.startswith("a=end-of-candidates"):
            continue
        kept.append(line)
    # the mid line may follow the candidates inside a section: fill it in afterwards
    mids = _mids_by_mline(sdp)
    for c in found:
        c["sdpMid"] = mids.get(int(c["sdpMLineIndex"]), c["sdpMid"])  # type: ignore[call-overload]
    return "\r\n".join(kept) + "\r\n", found


def _mids_by_mline(sdp: str) -> dict[int, str]:
    out: dict[int, str] = {}
    mline = -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            mline += 1
        elif line.startswith("a=mid:"):
            out[mline] = line[len("a=mid:"):].strip()
    return out


def recvonly_audio_mids(sdp: str) -> list[str]:
    """Mids of the offer's audio sections in which the client only receives (where the stub can send)."""
    mids: list[str] = []
    kind = ""
    mid = ""
    direction = ""

    def flush() -> None:
        if kind == "audio" and direction == "recvonly" and mid:
            mids.append(mid)

    for line in sdp.splitlines():
        if line.startswith("m="):
            flush()
            kind, mid, direction = line[2:].split(" ", 1)[0], "", ""
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:"):].strip()
        elif line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive") and line.startswith("a="):
            direction = line[2:]
    flush()
    return mids


class ClientPeer:
    """The stub's end of one client's peer connection."""

    def __init__(self, name: str, on_audio: AudioCallback, on_packet: PacketCallback) -> None:
        self.name = name
        self.pc = RTCPeerConnection()
        self._on_audio = on_audio
        self._on_packet = on_packet
        self._tasks: set[asyncio.Task[None]] = set()
        self._server_channels: dict[str, RTCDataChannel] = {}
        self._outbox: list[tuple[str, bytes]] = []
        self._trickled = False
        self._lock = asyncio.Lock()
        # Agent tracks waiting for a recvonly audio section in the client's next offer: track sid → track.
        self.outgoing: dict[str, MediaStreamTrack] = {}
        self.stream_ids: dict[str, str] = {}  # track sid → msid stream id `PA_x|TR_y`
        self.attached: dict[str, str] = {}  # mid → track sid
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    async def answer(self, offer_sdp: str) -> tuple[str, dict[str, str], list[dict[str, object]]]:
        """Apply the client's offer, attach waiting agent tracks, return (answer sdp, mid→track sid, candidates)."""
        async with self._lock:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            self._tap_negotiated_channels()
            self._ensure_server_channels()
            self._attach_outgoing(offer_sdp)
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
            sdp, candidates = split_candidates(self.pc.localDescription.sdp)
            if self._trickled:
                candidates = []
            self._trickled = True
            return sdp, dict(self.attached), candidates

    def _attach_outgoing(self, offer_sdp: str) -> None:
        free = [m for m in recvonly_audio_mids(offer_sdp) if m not in self.attached]
        waiting = [sid for sid in self.outgoing if sid not in self.attached.values()]
        by_mid = {t.mid: t for t in self.pc.getTransceivers()}
        for mid, sid in zip(free, waiting, strict=False):
            transceiver = by_mid.get(mid)
            if transceiver is None:
                continue
            track = self.outgoing[sid]
            transceiver.sender.replaceTrack(track)
            transceiver.sender._stream_id = self.stream_ids[sid]  # aiortc writes a=msid from these two
            transceiver.sender._track_id = sid
            transceiver.direction = "sendonly"
            self.attached[mid] = sid
            log.info("agent_track_attached peer=%s mid=%s track=%s", self.name, mid, sid)

    async def add_candidate(self, candidate_init: str) -> None:
        try:
            data = json.loads(candidate_init)
        except ValueError:
            log.warning("trickle_unparsable peer=%s", self.name)
            return
        text = str(data.get("candidate") or "")
        if not text:
            return  # end of candidates
        if text.startswith("candidate:"):
            text = text[len("candidate:"):]
        candidate = candidate_from_sdp(text)
        candidate.sdpMid = data.get("sdpMid")
        candidate.sdpMLineIndex = data.get("sdpMLineIndex")
        try:
            await self.pc.addIceCandidate(candidate)
        except Exception as e:  # aiortc raises on candidates for unknown mids; a stub only logs it
            log.warning("trickle_rejected peer=%s error=%s", self.name, e)

    def send_packet(self, packet: models.DataPacket, reliable: bool = True) -> None:
        label = "_reliable" if reliable else "_lossy"
        data = packet.SerializeToString()
        channel = self._server_channels.get(label)
        if channel is not None and channel.readyState == "open":
            channel.send(data)
        else:
            self._outbox.append((label, data))

    def _ensure_server_channels(self) -> None:
        # The SFU opens its own channels toward the client; the client reads server data from them.
        if self._server_channels:
            return
        for label, kwargs in (("_reliable", {"ordered": True}), ("_lossy", {"ordered": False, "maxRetransmits": 0})):
            try:
                channel = self.pc.createDataChannel(label, **kwargs)
            except Exception as e:
                log.warning("server_channel_failed peer=%s label=%s error=%s", self.name, label, e)
                continue
            channel.on("open", self._flush_outbox)
            self._server_channels[label] = channel

    def _tap_negotiated_channels(self) -> None:
        # livekit 1.2.1 creates `_reliable`/`_lossy` as pre-negotiated channels (no DCEP OPEN; `_reliable` is
        # SCTP stream 100), so aiortc never fires "datachannel" for them and drops their messages. Read binary
        # messages on streams aiortc does not know straight from the SCTP transport instead.
        sctp = self.pc.sctp
        if sctp is None or getattr(sctp, "_stub_tapped", False):
            return
        original = sctp._data_channel_receive
        known = sctp._data_channels

        async def receive(stream_id: int, pp_id: int, data: bytes) -> None:
            if stream_id not in known and pp_id in (_PPID_BINARY, _PPID_BINARY_EMPTY):
                self._deliver(data if pp_id == _PPID_BINARY else b"", f"sctp-stream-{stream_id}")
                return
            await original(stream_id, pp_id, data)

        sctp._data_channel_receive = receive  # type: ignore[method-assign]
        sctp._stub_tapped = True  # type: ignore[attr-defined]

    def _deliver(self, message: bytes, label: str) -> None:
        packet = models.DataPacket()
        try:
            packet.ParseFromString(message)
        except Exception:
            log.warning("data_packet_unparsable peer=%s label=%s", self.name, label)
            return
        self._on_packet(packet, label)

    def _flush_outbox(self) -> None:
        pending, self._outbox = self._outbox, []
        for label, data in pending:
            channel = self._server_channels.get(label)
            if channel is not None and channel.readyState == "open":
                channel.send(data)
            else:
                self._outbox.append((label, data))

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        label = channel.label
        log.info("client_channel peer=%s label=%s", self.name, label)

        @channel.on("message")
        def _message(message: bytes | str) -> None:
            if isinstance(message, bytes):
                self._deliver(message, label)

    def _on_track(self, track: MediaStreamTrack) -> None:
        log.info("client_track peer=%s kind=%s id=%s", self.name, track.kind, track.id)
        if track.kind != "audio":
            return
        task = asyncio.create_task(self._read_track(track))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_track(self, track: MediaStreamTrack) -> None:
        # Always drain the track: aiortc queues decoded frames without bound otherwise.
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            try:
                await self._on_audio(track.id, frame)
            except Exception:
                log.exception("audio_callback_failed peer=%s", self.name)

    def _on_state(self) -> None:
        log.info("pc_state peer=%s state=%s", self.name, self.pc.connectionState)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.pc.close()
