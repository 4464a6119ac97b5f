"""Data packets the scripted agent reads and writes: byte/text streams (header/chunk/trailer) and RPC.

Streams to a peer that advertises `client_protocol` < 2 travel as DataPacket stream_header / stream_chunk /
stream_trailer on `_reliable`; the stub's agent advertises 0, so that is all it has to understand.
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from livekit.protocol import models

# RPC error codes of the LiveKit RPC protocol (livekit-rtc `RpcError.ErrorCode`).
RPC_APPLICATION_ERROR = 1500
RPC_UNSUPPORTED_METHOD = 1400


@dataclass
class IncomingStream:
    """One stream as the agent sees it; `opened`/`closed` are monotonic seconds."""

    stream_id: str
    sender_identity: str
    topic: str
    mime_type: str
    attributes: dict[str, str]
    opened: float
    compression: int = 0
    chunks: list[bytes] = field(default_factory=list)
    closed: float | None = None
    reason: str = ""

    @property
    def payload(self) -> bytes:
        data = b"".join(self.chunks)
        if self.compression:
            # deflate-raw is the only compression the protocol defines; decode it defensively
            data = zlib.decompress(data, wbits=-15)
        return data


class StreamAssembler:
    """Reassembles incoming streams; calls `on_open` at the header and `on_close` at the trailer."""

    def __init__(self, on_open: Callable[[IncomingStream], None], on_close: Callable[[IncomingStream], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._open: dict[str, IncomingStream] = {}
        self._on_open = on_open
        self._on_close = on_close
        self._clock = clock

    def feed(self, packet: models.DataPacket) -> bool:
        """Handle a stream packet; False when the packet is not part of a stream."""
        which = packet.WhichOneof("value")
        if which == "stream_header":
            h = packet.stream_header
            stream = IncomingStream(
                stream_id=h.stream_id, sender_identity=packet.participant_identity, topic=h.topic,
                mime_type=h.mime_type, attributes=dict(h.attributes), opened=self._clock(),
                compression=int(getattr(h, "compression", 0) or 0),
            )
            self._open[h.stream_id] = stream
            self._on_open(stream)
            return True
        if which == "stream_chunk":
            stream = self._open.get(packet.stream_chunk.stream_id)
            if stream is not None:
                stream.chunks.append(bytes(packet.stream_chunk.content))
            return True
        if which == "stream_trailer":
            stream = self._open.pop(packet.stream_trailer.stream_id, None)
            if stream is not None:
                stream.closed = self._clock()
                stream.reason = packet.stream_trailer.reason
                stream.attributes.update(dict(packet.stream_trailer.attributes))
                self._on_close(stream)
            return True
        return False


def _packet(sender_identity: str, sender_sid: str, destination: str, sequence: int) -> models.DataPacket:
    return models.DataPacket(
        kind=models.DataPacket.RELIABLE,
        participant_identity=sender_identity,
        participant_sid=sender_sid,
        destination_identities=[destination] if destination else [],
        sequence=sequence,
    )


def text_stream_packets(text: str, topic: str, sender_identity: str, sender_sid: str, destination: str,
                        next_sequence: Callable[[], int], attributes: dict[str, str] | None = None,
                        chunk_size: int = 15_000) -> list[models.DataPacket]:
    """A complete text stream (header, chunks, trailer) as the legacy packets."""
    stream_id = str(uuid.uuid4())
    data = text.encode()
    header = _packet(sender_identity, sender_sid, destination, next_sequence())
    header.stream_header.stream_id = stream_id
    header.stream_header.timestamp = int(time.time() * 1000)
    header.stream_header.topic = topic
    header.stream_header.mime_type = "text/plain"
    header.stream_header.total_length = len(data)
    header.stream_header.text_header.operation_type = models.DataStream.CREATE
    header.stream_header.attributes.update(attributes or {})
    out = [header]
    for index, start in enumerate(range(0, len(data), chunk_size)):
        chunk = _packet(sender_identity, sender_sid, destination, next_sequence())
        chunk.stream_chunk.stream_id = stream_id
        chunk.stream_chunk.chunk_index = index
        chunk.stream_chunk.content = data[start:start + chunk_size]
        out.append(chunk)
    trailer = _packet(sender_identity, sender_sid, destination, next_sequence())
    trailer.stream_trailer.stream_id = stream_id
    out.append(trailer)
    return out


def rpc_ack(request_id: str, sender_identity: str, sender_sid: str, destination: str,
            sequence: int) -> models.DataPacket:
    packet = _packet(sender_identity, sender_sid, destination, sequence)
    packet.rpc_ack.request_id = request_id
    return packet


def rpc_response(request_id: str, sender_identity: str, sender_sid: str, destination: str, sequence: int,
                 payload: str | None = None, error: tuple[int, str] | None = None) -> models.DataPacket:
    packet = _packet(sender_identity, sender_sid, destination, sequence)
    packet.rpc_response.request_id = request_id
    if error is not None:
        packet.rpc_response.error.code = error[0]
        packet.rpc_response.error.message = error[1]
    else:
        packet.rpc_response.payload = payload or ""
    return packet


def rpc_request(method: str, payload: str, sender_identity: str, sender_sid: str, destination: str,
                sequence: int, timeout_ms: int = 10_000) -> tuple[str, models.DataPacket]:
    """An RPC the agent makes on a client (its id, and the packet)."""
    packet = _packet(sender_identity, sender_sid, destination, sequence)
    request_id = str(uuid.uuid4())
    packet.rpc_request.id = request_id
    packet.rpc_request.method = method
    packet.rpc_request.payload = payload
    packet.rpc_request.response_timeout_ms = timeout_ms
    packet.rpc_request.version = 1
    return request_id, packet
