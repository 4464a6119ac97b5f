"""The stub SFU's signalling server: `/rtc/v1` websocket joins and resumes, token checks, the signal loop.

`GET /rtc/v1?join_request=…` with `Authorization: Bearer <jwt>` (or `access_token=`) → JoinResponse, then the
embedded publisher offer is answered. `/rtc/validate` and `/rtc/v1/validate` explain a refused upgrade the way
the real server does (the SDK calls them after a non-404 failure). The legacy two-PC `/rtc` path is not
implemented: it answers 404 so an SDK without single-PC mode fails plainly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from livekit import api
from livekit.protocol import models, rtc
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import versions
from .agent import AgentConfig
from .joinreq import BadJoinRequest, decode_join_request
from .peer import ClientPeer
from .room import Client, EventLog, Room, new_sid

log = logging.getLogger("tests.stubsfu.server")

SERVER_VERSION = "1.9.0-stub"


@dataclass
class StubConfig:
    host: str = "0.0.0.0"
    port: int = 7880
    api_key: str = "devkey"
    api_secret: str = "secret"
    agent: AgentConfig = field(default_factory=AgentConfig)
    control_socket: Path | None = None
    ping_interval: int = 5
    ping_timeout: int = 15
    refresh_token_s: float = 300.0  # the real server pushes one right after join, then every 5 min
    resume_window_s: float = 20.0  # how long a dropped participant waits for a resume


@dataclass
class PendingJoin:
    join: rtc.JoinRequest
    claims: api.access_token.Claims
    token: str


class StubServer:
    def __init__(self, config: StubConfig) -> None:
        self.config = config
        self.verifier = api.TokenVerifier(config.api_key, config.api_secret)
        record = config.agent.record_dir
        if record is not None:
            record.mkdir(parents=True, exist_ok=True)
        self.events = EventLog(record / "events.jsonl" if record is not None else None)
        self.rooms: dict[str, Room] = {}
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.fatal: str | None = None
        self.stopped = asyncio.Event()

    # ---- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await serve(self._handle, self.config.host, self.config.port,
                                   process_request=self._process_request, max_size=None, ping_interval=None,
                                   compression=None)
        if self.config.port == 0:
            self.config.port = self._server.sockets[0].getsockname()[1]  # type: ignore[index]
        self.events.record("listening", host=self.config.host, port=self.config.port)

    async def stop(self) -> None:
        for room in self.rooms.values():
            await room.agent.close()
            for client in list(room.clients.values()):
                if client.peer is not None:
                    await client.peer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        self.stopped.set()

    def room(self, name: str) -> Room:
        if name not in self.rooms:
            room = Room(name, self.config.agent, self.events)
            self.rooms[name] = room
            self._spawn(room.agent.autoflush())
            self.events.record("room_created", name=name, sid=room.sid)
        return self.rooms[name]

    # ---- HTTP side of the upgrade ------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path.rstrip("/")
        token = query.get("access_token", "")
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        if path in ("/rtc/validate", "/rtc/v1/validate"):
            claims, error = self._verify(token)
            if error:
                return connection.respond(HTTPStatus.UNAUTHORIZED, error + "\n")
            return connection.respond(HTTPStatus.OK, "success\n")
        if path == "/rtc":
            self.events.record("legacy_path_refused")
            return connection.respond(HTTPStatus.NOT_FOUND, "this stub SFU speaks only /rtc/v1\n")
        if path != "/rtc/v1":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        claims, error = self._verify(token)
        if error:
            self.events.record("join_refused", status=401, error=error)
            return connection.respond(HTTPStatus.UNAUTHORIZED, error + "\n")
        try:
            join = decode_join_request(query.get("join_request", ""))
        except BadJoinRequest as e:
            return connection.respond(HTTPStatus.BAD_REQUEST, f"bad join_request: {e}\n")
        try:
            versions.check_client_protocol(join.client_info.protocol)
        except versions.VersionMismatch as e:
            self._fail_loudly(str(e))
            return connection.respond(HTTPStatus.BAD_REQUEST, str(e) + "\n")
        connection.stub_join = PendingJoin(join=join, claims=claims, token=token)  # type: ignore[attr-defined]
        return None

    def _verify(self, token: str) -> tuple[Any, str]:
        if not token:
            return None, "no access token: pass Authorization: Bearer <jwt>"
        try:
            claims = self.verifier.verify(token)
        except Exception as e:
            return None, f"invalid token: {e}"
        video = claims.video
        if video is None or not video.room_join or not video.room:
            return None, "invalid token: it grants no room_join for a room"
        if not claims.identity:
            return None, "invalid token: it has no identity"
        return claims, ""

    def _fail_loudly(self, message: str) -> None:
        self.fatal = message
        self.events.record("version_mismatch", error=message)
        print(f"stubsfu: FATAL: {message}", file=sys.stderr, flush=True)
        self._spawn(self.stop())

    # ---- websocket side --------------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        pending: PendingJoin = ws.stub_join  # type: ignore[attr-defined]
        join = pending.join
        room = self.room(pending.claims.video.room)
        if join.reconnect:
            client = room.clients.get(join.participant_sid)
            if client is None or client.left:
                self.events.record("resume_refused", sid=join.participant_sid)
                await self._send(ws, rtc.SignalResponse(leave=rtc.LeaveRequest(
                    action=rtc.LeaveRequest.RECONNECT, reason=models.DisconnectReason.STATE_MISMATCH)))
                return
            await self._resume(ws, room, client)
        else:
            client = await self._join(ws, room, pending)
        await self._serve(ws, room, client)

    async def _join(self, ws: ServerConnection, room: Room, pending: PendingJoin) -> Client:
        join, claims = pending.join, pending.claims
        attributes = dict(claims.attributes or {})
        attributes.update(dict(join.participant_attributes))
        client = Client(
            sid=new_sid("PA"), identity=claims.identity, name=claims.name, metadata=join.metadata or claims.metadata,
            attributes=attributes, kind=_kind(claims.kind), client_protocol=join.client_info.client_protocol,
            auto_subscribe=join.connection_settings.auto_subscribe or not join.HasField("connection_settings"),
            can_update_metadata=bool(claims.video and claims.video.can_update_own_metadata),
            token_claims=claims,
        )
        replaced = room.add(client)
        if replaced is not None:
            await replaced.send(rtc.SignalResponse(leave=rtc.LeaveRequest(
                action=rtc.LeaveRequest.DISCONNECT, reason=models.DisconnectReason.DUPLICATE_IDENTITY)))
            await room.remove(replaced, models.DisconnectReason.DUPLICATE_IDENTITY)
        client.peer = ClientPeer(client.sid, self._audio_callback(room, client), self._packet_callback(room, client))
        self._bind(ws, client)
        self.events.record("participant_joined", sid=client.sid, identity=client.identity, room=room.name,
                           protocol=join.client_info.protocol, client_protocol=client.client_protocol,
                           sdk=join.client_info.sdk, sdk_version=join.client_info.version,
                           reconnect_reason=join.reconnect_reason)
        response = rtc.JoinResponse(
            room=room.proto(), participant=client.info(), other_participants=room.others(client),
            server_version=SERVER_VERSION, subscriber_primary=False, ping_interval=self.config.ping_interval,
            ping_timeout=self.config.ping_timeout,
            server_info=models.ServerInfo(edition=models.ServerInfo.Standard, version=SERVER_VERSION,
                                          protocol=versions.SIGNAL_PROTOCOL, node_id="ND_stub"),
        )
        await client.send(rtc.SignalResponse(join=response))
        for request in join.add_track_requests:
            await self._add_track(room, client, request)
        room.attach_peer(client)
        if join.publisher_offer.sdp:
            await self._answer(client, join.publisher_offer)
        await self._refresh_token(client)
        self._spawn(self._refresh_loop(client))
        for dispatch in claims.room_config.agents if claims.room_config is not None else []:
            room.agent.dispatched(dispatch.agent_name)
        room.agent.on_client_joined()
        return client

    async def _resume(self, ws: ServerConnection, room: Room, client: Client) -> None:
        client.resumes += 1
        self._bind(ws, client)
        self.events.record("participant_resumed", sid=client.sid, identity=client.identity, resumes=client.resumes)
        await client.send(rtc.SignalResponse(reconnect=rtc.ReconnectResponse()))
        # Without the participant list the client synthesises disconnects for everyone it does not hear about.
        others = room.others(client)
        if others:
            await client.send(rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=others)))

    def _bind(self, ws: ServerConnection, client: Client) -> None:
        async def sender(message: rtc.SignalResponse) -> None:
            await self._send(ws, message)

        client.sender = sender
        client.websocket = ws

    async def _send(self, ws: ServerConnection, message: rtc.SignalResponse) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(message.SerializeToString())

    async def _serve(self, ws: ServerConnection, room: Room, client: Client) -> None:
        left = False
        try:
            async for data in ws:
                if isinstance(data, str):
                    continue
                request = rtc.SignalRequest()
                try:
                    request.ParseFromString(data)
                except Exception:
                    log.warning("signal_unparsable sid=%s", client.sid)
                    continue
                if await self._dispatch(room, client, request):
                    left = True
                    break
        except ConnectionClosed:
            pass
        finally:
            if client.websocket is ws:
                client.sender = None
                client.websocket = None
                if not left and not client.left:
                    self.events.record("signal_closed", sid=client.sid)
                    self._spawn(self._expire(room, client))

    async def _expire(self, room: Room, client: Client) -> None:
        await asyncio.sleep(self.config.resume_window_s)
        if client.sender is None and not client.left:
            await room.remove(client, models.DisconnectReason.SIGNAL_CLOSE)

    async def _dispatch(self, room: Room, client: Client, request: rtc.SignalRequest) -> bool:
        """Handle one signal request; True when the client left."""
        which = request.WhichOneof("message")
        if which == "offer":
            await self._answer(client, request.offer)
        elif which == "trickle":
            if client.peer is not None:
                await client.peer.add_candidate(request.trickle.candidateInit)
        elif which == "add_track":
            await self._add_track(room, client, request.add_track)
        elif which == "ping_req":
            await client.send(rtc.SignalResponse(pong_resp=rtc.Pong(
                last_ping_timestamp=request.ping_req.timestamp, timestamp=int(time.time() * 1000))))
        elif which == "ping":
            await client.send(rtc.SignalResponse(pong=int(time.time() * 1000)))
        elif which == "leave":
            self.events.record("client_leave", sid=client.sid, action=request.leave.action)
            await room.remove(client)
            return True
        elif which == "subscription":
            if request.subscription.subscribe:
                room.request_media_sections(client)
        elif which == "update_metadata":
            await self._update_metadata(client, request.update_metadata)
        elif which == "mute":
            track = client.tracks.get(request.mute.sid)
            if track is not None:
                track.muted = request.mute.muted
        elif which == "sync_state":
            self.events.record("sync_state", sid=client.sid)
        elif which == "answer":
            log.warning("unexpected_answer sid=%s (single-PC clients never answer)", client.sid)
        else:
            log.info("signal_ignored sid=%s message=%s", client.sid, which)
        return False

    async def _answer(self, client: Client, offer: rtc.SessionDescription) -> None:
        assert client.peer is not None
        sdp, mid_to_track, candidates = await client.peer.answer(offer.sdp)
        answer = rtc.SessionDescription(type="answer", sdp=sdp, id=offer.id)
        answer.mid_to_track_id.update(mid_to_track)
        await client.send(rtc.SignalResponse(answer=answer))
        for candidate in candidates:
            init = {"candidate": candidate["candidate"], "sdpMid": candidate["sdpMid"],
                    "sdpMLineIndex": candidate["sdpMLineIndex"]}
            await client.send(rtc.SignalResponse(trickle=rtc.TrickleRequest(
                candidateInit=_json(init), target=rtc.PUBLISHER)))
        self.events.record("answered", sid=client.sid, mids=dict(mid_to_track))

    async def _add_track(self, room: Room, client: Client, request: rtc.AddTrackRequest) -> None:
        sid = new_sid("TR")
        track = models.TrackInfo(
            sid=sid, type=request.type, name=request.name, muted=request.muted, source=request.source,
            disable_dtx=request.disable_dtx, stereo=request.stereo, disable_red=request.disable_red,
            mime_type="audio/opus" if request.type == models.AUDIO else "video/vp8", stream=request.stream,
        )
        track.audio_features.extend(request.audio_features)
        client.tracks[sid] = track
        client.cid_to_sid[request.cid] = sid
        await client.send(rtc.SignalResponse(track_published=rtc.TrackPublishedResponse(cid=request.cid, track=track)))
        features = [models.AudioTrackFeature.Name(f) for f in request.audio_features]
        self.events.record("track_published", sid=client.sid, track_sid=sid, cid=request.cid, name=request.name,
                           source=models.TrackSource.Name(request.source), features=features)
        if request.type == models.AUDIO and request.source == models.TrackSource.MICROPHONE:
            room.agent.on_mic_published(sid, client.identity)

    async def _update_metadata(self, client: Client, update: rtc.UpdateParticipantMetadata) -> None:
        reason = rtc.RequestResponse.OK
        if not client.can_update_metadata:
            reason = rtc.RequestResponse.NOT_ALLOWED
        else:
            if update.metadata:
                client.metadata = update.metadata
            if update.name:
                client.name = update.name
            for key, value in update.attributes.items():
                if value:
                    client.attributes[key] = value
                else:
                    client.attributes.pop(key, None)
            client.version += 1
            await client.send(rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=[client.info()])))
        if update.request_id:
            await client.send(rtc.SignalResponse(request_response=rtc.RequestResponse(
                request_id=update.request_id, reason=reason)))
        self.events.record("metadata_update", sid=client.sid, allowed=reason == rtc.RequestResponse.OK,
                           attributes=dict(update.attributes))

    # ---- tokens ------------------------------------------------------------------------------------------------

    def mint_refresh(self, client: Client) -> str:
        claims = client.token_claims
        token = (api.AccessToken(self.config.api_key, self.config.api_secret)
                 .with_identity(client.identity).with_name(client.name).with_grants(claims.video)
                 .with_ttl(timedelta(hours=6)))
        if claims.metadata:
            token = token.with_metadata(claims.metadata)
        if claims.attributes:
            token = token.with_attributes(claims.attributes)
        if claims.kind:
            token = token.with_kind(claims.kind)
        return token.to_jwt()

    async def _refresh_token(self, client: Client) -> None:
        await client.send(rtc.SignalResponse(refresh_token=self.mint_refresh(client)))
        self.events.record("token_refreshed", sid=client.sid)

    async def _refresh_loop(self, client: Client) -> None:
        while not client.left:
            await asyncio.sleep(self.config.refresh_token_s)
            if client.sender is not None and not client.left:
                await self._refresh_token(client)

    # ---- media/data plumbing -----------------------------------------------------------------------------------

    def _audio_callback(self, room: Room, client: Client):  # type: ignore[no-untyped-def]
        async def on_audio(track_id: str, frame: Any) -> None:
            sid = client.cid_to_sid.get(track_id)
            if sid is None:  # msid track ids that are not the cid: fall back to the client's only mic
                mics = [s for s, t in client.tracks.items() if t.type == models.AUDIO]
                sid = mics[-1] if mics else None
            if sid is not None:
                room.agent.on_audio(sid, frame)

        return on_audio

    def _packet_callback(self, room: Room, client: Client):  # type: ignore[no-untyped-def]
        def on_packet(packet: models.DataPacket, label: str) -> None:
            if not packet.participant_identity:
                packet.participant_identity = client.identity
            room.agent.on_packet(client.identity, packet)

        return on_packet

    # ---- control ------------------------------------------------------------------------------------------------

    def clients(self) -> list[tuple[Room, Client]]:
        return [(room, c) for room in self.rooms.values() for c in list(room.clients.values())]

    def drop_websockets(self) -> int:
        """Abort every client websocket without a close frame (forces the SDK to resume)."""
        n = 0
        for _room, client in self.clients():
            ws = client.websocket
            if ws is not None:
                ws.transport.abort()
                n += 1
        self.events.record("control_drop_websockets", count=n)
        return n

    async def send_leave(self, action: int) -> int:
        n = 0
        for _room, client in self.clients():
            if client.sender is not None:
                await client.send(rtc.SignalResponse(leave=rtc.LeaveRequest(
                    action=action, can_reconnect=action != rtc.LeaveRequest.DISCONNECT,
                    reason=models.DisconnectReason.UNKNOWN_REASON)))
                n += 1
        self.events.record("control_leave", action=rtc.LeaveRequest.Action.Name(action), count=n)
        if action != rtc.LeaveRequest.RESUME:
            # the server forgets the participant: a RECONNECT comes back as a new join
            for room, client in self.clients():
                await room.remove(client, models.DisconnectReason.UNKNOWN_REASON)
        return n

    async def push_refresh_tokens(self) -> int:
        targets = [c for _r, c in self.clients() if c.sender is not None]
        for client in targets:
            await self._refresh_token(client)
        return len(targets)

    def snapshot(self) -> dict[str, Any]:
        return {"port": self.config.port, "fatal": self.fatal, "rooms": [r.snapshot() for r in self.rooms.values()],
                "events": self.events.items}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _kind(kind: str) -> int:
    names = {"standard": models.ParticipantInfo.STANDARD, "agent": models.ParticipantInfo.AGENT,
             "sip": models.ParticipantInfo.SIP, "ingress": models.ParticipantInfo.INGRESS,
             "egress": models.ParticipantInfo.EGRESS}
    return names.get((kind or "").lower(), models.ParticipantInfo.STANDARD)


def _json(obj: dict[str, Any]) -> str:
    return json.dumps(obj)
