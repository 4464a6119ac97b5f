"""A room of the stub: its SID, the client participants (one per join), the scripted agent, the event log.

A client keeps its participant SID, tracks and peer connection across a resume (a new websocket); a full
rejoin is a new Client with new SIDs. The room is the agent's host: it turns what the agent does into signal
messages and data packets for the clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livekit.protocol import models, rtc

from .agent import AgentConfig, ScriptedAgent
from .peer import ClientPeer
from .reply import ReplyTrack

log = logging.getLogger("tests.stubsfu.room")

Sender = Callable[[rtc.SignalResponse], Awaitable[None]]


def new_sid(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


@dataclass
class Client:
    """One joined participant (not the agent)."""

    sid: str
    identity: str
    name: str
    metadata: str
    attributes: dict[str, str]
    kind: int
    client_protocol: int
    auto_subscribe: bool
    can_update_metadata: bool
    token_claims: Any
    peer: ClientPeer | None = None
    sender: Sender | None = None  # current websocket's send; None between a drop and a resume
    websocket: Any = None
    tracks: dict[str, models.TrackInfo] = field(default_factory=dict)
    cid_to_sid: dict[str, str] = field(default_factory=dict)
    version: int = 1
    joined_at: float = field(default_factory=time.time)
    left: bool = False
    resumes: int = 0

    def info(self) -> models.ParticipantInfo:
        info = models.ParticipantInfo(
            sid=self.sid, identity=self.identity, name=self.name, metadata=self.metadata,
            state=models.ParticipantInfo.ACTIVE, kind=self.kind, joined_at=int(self.joined_at),
            joined_at_ms=int(self.joined_at * 1000), version=self.version, is_publisher=bool(self.tracks),
            client_protocol=self.client_protocol,
            permission=models.ParticipantPermission(can_subscribe=True, can_publish=True, can_publish_data=True,
                                                    can_update_metadata=self.can_update_metadata),
        )
        info.attributes.update(self.attributes)
        info.tracks.extend(self.tracks.values())
        return info

    async def send(self, message: rtc.SignalResponse) -> None:
        if self.sender is not None:
            await self.sender(message)


class Room:
    """Clients + the scripted agent; implements the agent's AgentHost."""

    def __init__(self, name: str, agent_config: AgentConfig, events: EventLog) -> None:
        self.name = name
        self.sid = new_sid("RM")
        self.created = time.time()
        self.clients: dict[str, Client] = {}
        self.events = events
        self.agent = ScriptedAgent(self, agent_config)
        self._voice: tuple[str, str, Callable[[], ReplyTrack]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def proto(self) -> models.Room:
        return models.Room(sid=self.sid, name=self.name, creation_time=int(self.created),
                           creation_time_ms=int(self.created * 1000), num_participants=len(self.clients) + int(
                               self.agent.joined), empty_timeout=300, departure_timeout=20)

    def others(self, client: Client) -> list[models.ParticipantInfo]:
        out = [c.info() for c in self.clients.values() if c.sid != client.sid and not c.left]
        if self.agent.joined:
            out.append(self.agent.info)
        return out

    def add(self, client: Client) -> Client | None:
        """Add a client; returns the participant it replaces (same identity), if any."""
        replaced = next((c for c in self.clients.values() if c.identity == client.identity and not c.left), None)
        self.clients[client.sid] = client
        return replaced

    def attach_peer(self, client: Client) -> None:
        if self._voice is not None and client.peer is not None:
            self._register_voice(client)

    async def remove(self, client: Client, reason: int = models.DisconnectReason.CLIENT_INITIATED) -> None:
        if client.left:
            return
        client.left = True
        self.clients.pop(client.sid, None)
        for track_sid in list(client.tracks):
            self.agent.on_mic_gone(track_sid)
        if client.peer is not None:
            await client.peer.close()
        gone = client.info()
        gone.state = models.ParticipantInfo.DISCONNECTED
        gone.disconnect_reason = reason
        for other in list(self.clients.values()):
            await other.send(rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=[gone])))
        self.events.record("participant_left", sid=client.sid, identity=client.identity, reason=reason)

    # ---- AgentHost ------------------------------------------------------------------------------------------------

    def publish_participant(self, info: models.ParticipantInfo) -> None:
        snapshot = models.ParticipantInfo()
        snapshot.CopyFrom(info)
        for client in list(self.clients.values()):
            self._spawn(client.send(rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=[snapshot]))))

    def track_subscribed(self, track_sid: str) -> None:
        for client in list(self.clients.values()):
            if track_sid in client.tracks:
                self._spawn(client.send(rtc.SignalResponse(track_subscribed=rtc.TrackSubscribed(track_sid=track_sid))))

    def send_data(self, destination_identity: str, packet: models.DataPacket) -> None:
        for client in list(self.clients.values()):
            if client.identity == destination_identity and client.peer is not None:
                client.peer.send_packet(packet)

    def offer_track(self, participant_sid: str, track_sid: str, make_track: Callable[[], ReplyTrack]) -> None:
        self._voice = (participant_sid, track_sid, make_track)
        for client in list(self.clients.values()):
            self._register_voice(client)

    def record_event(self, kind: str, **fields: Any) -> None:
        self.events.record(kind, **fields)

    # ---- helpers --------------------------------------------------------------------------------------------------

    def _register_voice(self, client: Client) -> None:
        assert self._voice is not None
        participant_sid, track_sid, make_track = self._voice
        peer = client.peer
        if peer is None or not client.auto_subscribe or track_sid in peer.outgoing:
            return
        peer.outgoing[track_sid] = make_track()
        peer.stream_ids[track_sid] = f"{participant_sid}|{track_sid}"
        self.request_media_sections(client)

    def request_media_sections(self, client: Client) -> None:
        peer = client.peer
        if peer is None:
            return
        missing = len([sid for sid in peer.outgoing if sid not in peer.attached.values()])
        if missing:
            self._spawn(client.send(rtc.SignalResponse(
                media_sections_requirement=rtc.MediaSectionsRequirement(num_audios=missing))))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name, "sid": self.sid, "agent": self.agent.snapshot(),
            "clients": [{"sid": c.sid, "identity": c.identity, "connected": c.sender is not None,
                         "resumes": c.resumes, "tracks": {s: t.name for s, t in c.tracks.items()},
                         "pc_state": c.peer.connection_state if c.peer else None} for c in self.clients.values()],
        }


class EventLog:
    """Everything notable, in order: served by the control socket and appended to `<record>/events.jsonl`."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.items: list[dict[str, Any]] = []
        self._start = time.monotonic()

    def record(self, kind: str, **fields: Any) -> None:
        item = {"t_ms": round((time.monotonic() - self._start) * 1000, 1), "kind": kind, **fields}
        self.items.append(item)
        log.info("event kind=%s fields=%s", kind, json.dumps(fields, default=str))
        if self.path is not None:
            with contextlib.suppress(OSError), self.path.open("a") as f:
                f.write(json.dumps(item, default=str) + "\n")
