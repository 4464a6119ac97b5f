"""A connect attempt's lifecycle: one token fetch + `Room.connect` + mic publish, on the session clock's deadline,
its failure classified as a `ConnectFailed`, and its disposal in the order livekit-facts asks for.

`Connector` runs one attempt at a time for its supervisor. Each attempt runs in its own task, so an end during a
connect or a reconnect is handled at once; an attempt abandoned inside the native `Room.connect` is let finish
(bounded by its deadline) and disconnects after it.

Teardown order matters (livekit-facts): close the pre-connect writer (the supervisor's uplink, before
`abandon`), `aclose()` the AudioSource, then disconnect — an unclosed source while the SDK is reconnecting can
abort the process natively.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from device.config.schema import Config
from device.core.vocabulary import FailureReason
from device.session.classify import classify_connect_error
from device.session.clock import Clock, within
from device.session.media import Media
from device.session.policy import ConnectFailed
from device.session.tokens import TokenCache, TokenError, TokenRequest, build_request
from device.session.uplink.link_watch import LinkWatch, watch

if TYPE_CHECKING:
    from livekit import rtc

log = logging.getLogger("device.session.attempt")

DISCONNECT_TIMEOUT_S = 5.0


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
    link: LinkWatch = field(default_factory=LinkWatch)  # when the server was last heard on the mic's connection
    link_task: asyncio.Task[None] | None = None

    def is_abandoned(self) -> bool:
        return self.abandoned

    @property
    def room_name(self) -> str:
        """The room joined — the token's, which a token server may choose whatever the request asked — else the
        room asked for."""
        joined = self.room.name if self.room is not None and self.publication is not None else ""
        return joined or self.request.room_name

    @property
    def identity(self) -> str:
        """The identity joined as (the token's: a token server may fix it), else the one asked for."""
        joined = self.room.local_participant.identity if self.room is not None and self.publication is not None else ""
        return joined or self.request.participant_identity

    @property
    def published_room(self) -> rtc.Room | None:
        """The room, once the mic is published in it (what turn calls and typed text need)."""
        return self.room if self.publication is not None else None


@dataclass(frozen=True)
class Published:
    """An attempt has joined its room and published the mic (posted to the supervisor's inbox)."""

    attempt: Attempt


class Connector:
    """The supervisor's connect attempts, one at a time (`current`), and the abandoned ones still finishing."""

    def __init__(
        self,
        config: Config,
        *,
        tokens: TokenCache,
        room_factory: Callable[[], rtc.Room],
        media: Media,
        clock: Clock,
        sample_rate: int,
        identity: str | None,
        post: Callable[[int, ConnectFailed | Published], None],
        prepare: Callable[[Attempt, rtc.Room], None],
        joined: Callable[[Attempt, rtc.LocalParticipant], None],
        muted: Callable[[], bool],
    ) -> None:
        """`prepare(attempt, room)`: wire the room's callbacks before it connects; `joined(attempt, lp)`: the room
        is connected (register RPC methods) — the mic is published next; `post(attempt id, item)`: the outcome
        (`Published` or `ConnectFailed`) for the supervisor's inbox; `muted()`: publish the mic muted."""
        self._lk = config.livekit
        self._sc = config.session
        self._tokens = tokens
        self._room_factory = room_factory
        self._media = media
        self._clock = clock
        self._sample_rate = sample_rate
        self._identity = identity  # one identity for the daemon's life (built at the first connect)
        self._post = post
        self._prepare = prepare
        self._joined = joined
        self._muted = muted
        self._request: TokenRequest | None = None
        self._seq = 0
        self._old: set[asyncio.Task[None]] = set()
        self.current: Attempt | None = None

    def connect(self, *, fresh: bool, new_room: bool) -> Attempt:
        if self._identity is None:
            self._identity = build_request(self._lk).participant_identity
        if new_room or self._request is None:
            self._request = build_request(self._lk, identity=self._identity, mode=self._sc.mode)
        self._seq += 1
        att = Attempt(id=self._seq, request=self._request, fresh=fresh)
        self.current = att
        log.info("session connecting room=%s identity=%s attempt=%d fresh_token=%s", att.request.room_name,
                 att.request.participant_identity, att.id, fresh)
        att.task = asyncio.get_running_loop().create_task(self._run(att))
        return att

    def forget_room(self) -> None:
        """The session is over: the next connect asks for a new room."""
        self._request = None

    def release(self) -> Attempt | None:
        """The current attempt is no longer the session's: its late callbacks are dropped from now on."""
        att, self.current = self.current, None
        return att

    async def abandon(self, att: Attempt, reason: str) -> None:
        """Tear a released attempt down (the uplink has detached from it first)."""
        att.abandoned = True
        if att.task is not None and not att.task.done():
            if att.in_room_connect:
                # let the native connect finish (bounded by the deadline); the task disconnects after it
                self._old.add(att.task)
                att.task.add_done_callback(self._old.discard)
                return
            att.task.cancel()
            await asyncio.gather(att.task, return_exceptions=True)
        await self._dispose(att)
        log.info("session torn down room=%s reason=%s", att.room_name, reason)

    def tasks(self) -> list[asyncio.Task[None]]:
        """Every attempt still running, the abandoned ones included (to wait for before exit)."""
        tasks = list(self._old)
        if self.current is not None and self.current.task is not None:
            tasks.append(self.current.task)
        return tasks

    async def _run(self, att: Attempt) -> None:
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
        self._prepare(att, room)
        options = rtc.RoomOptions(auto_subscribe=True, connect_timeout=max(1.0, self._sc.connect_timeout_s / 2))
        att.in_room_connect = True
        await room.connect(creds.server_url, creds.participant_token, options)
        att.in_room_connect = False
        if att.is_abandoned():  # a method, not the attribute: abandon() sets it while connect() awaits
            return
        lp = room.local_participant
        self._joined(att, lp)
        att.source = self._media.audio_source(self._sample_rate)
        att.track = self._media.mic_track(att.source)
        # The flag makes the agent wait (up to 3 s) for a buffer: set it only when the uplink will send one.
        options_pub = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE,
                                              preconnect_buffer=self._sc.preconnect)
        att.publication = await lp.publish_track(att.track, options_pub)
        if self._muted():
            att.track.mute()
        att.link_task = asyncio.get_running_loop().create_task(watch(room, att.link, self._clock))
        self._post(att.id, Published(att))

    async def _dispose(self, att: Attempt) -> None:
        if att.disposed:
            return
        att.disposed = True
        if att.link_task is not None:
            att.link_task.cancel()
            await asyncio.gather(att.link_task, return_exceptions=True)
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
                log.warning("disconnect failed room=%s error=%s", att.room_name, e)
