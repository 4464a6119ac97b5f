"""The daemon ↔ session-process protocol: every message, both directions, declared once.

The daemon (`session/process/remote.py`) starts the child with a `Hello`, then makes `Call`s — one `SessionPort`
method each, answered by a `Reply` with the same `cid` — gives the mic by ring index for each reader the child
opens (`MIC_RECORD`s on their own socket; the samples are in shared memory), and ends it with `Close`. The
child (`session/process/host.py`) says `Ready` (or `StartFailed`), forwards the supervisor's events (`Emitted`), its
status (`Status`), its log records (`Log`), the agent's audio (`Play`, `PlayEnd`, `Flush`, `Volume`), `Over`
once its session has ended, and `Beat` when it has nothing else to say.
`ipc.Channel` carries them as pickles and refuses anything that is not one of these.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from device.core.vocabulary import Event
from device.session.status import SessionStatus

if TYPE_CHECKING:
    from device.config.schema import Config
    from device.session.ports import SessionPort


# ---- the mic: not a message ------------------------------------------------------------------------------------
# The mic's samples are in the daemon's ring, in shared memory (device/audio/shared.py), which the child maps. For
# each reader the child opened (`OpenReader`), a second socket (SOCK_SEQPACKET) carries one record each time the
# ring has grown: (reader id, the ring index the audio now ends at), or MIC_EOF when the reader ended.
MIC_RECORD = struct.Struct("=qq")
MIC_EOF = -1


# ---- the calls: one per SessionPort method ---------------------------------------------------------------------


@dataclass(frozen=True)
class StartCall:
    mark: int
    session: int
    listen_from: int | None = None


@dataclass(frozen=True)
class StartTurnCall:
    mark: int
    session: int


@dataclass(frozen=True)
class EndCall:
    reason: str


@dataclass(frozen=True)
class EndTurnCall:
    pass


@dataclass(frozen=True)
class CancelTurnCall:
    pass


@dataclass(frozen=True)
class InterruptCall:
    pass


@dataclass(frozen=True)
class SetMutedCall:
    muted: bool


@dataclass(frozen=True)
class SendTextCall:
    text: str


@dataclass(frozen=True)
class WaitQuietCall:
    pass


@dataclass(frozen=True)
class RefreshCall:
    pass


Request = (StartCall | StartTurnCall | EndCall | EndTurnCall | CancelTurnCall | InterruptCall | SetMutedCall
           | SendTextCall | WaitQuietCall | RefreshCall)


def starts_a_session(request: Request) -> bool:
    return isinstance(request, StartCall | StartTurnCall)


async def perform(port: SessionPort, request: Request) -> None:
    """Carry out one call on the child's supervisor."""
    match request:
        case StartCall(mark, session, listen_from):
            await port.start(mark, session=session, listen_from=listen_from)
        case StartTurnCall(mark, session):
            await port.start_turn(mark, session=session)
        case EndCall(reason):
            await port.end(reason)
        case EndTurnCall():
            await port.end_turn()
        case CancelTurnCall():
            await port.cancel_turn()
        case InterruptCall():
            await port.interrupt()
        case SetMutedCall(muted):
            await port.set_muted(muted)
        case SendTextCall(text):
            await port.send_text(text)
        case WaitQuietCall():
            await port.wait_quiet()
        case RefreshCall():
            await port.refresh()


# ---- daemon → child ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    config: Config
    identity: str
    muted: bool
    volume: float
    sample_rate: int
    factory: str | None  # "module:function" building the supervisor (tests), None for the real one
    log_levels: tuple[tuple[str, int], ...]  # logger name ("" = root) → level


@dataclass(frozen=True)
class Call:
    cid: int
    request: Request


@dataclass(frozen=True)
class Close:
    """End the session (CLIENT_INITIATED) and exit."""


# ---- child → daemon ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    pid: int


@dataclass(frozen=True)
class StartFailed:
    detail: str


@dataclass(frozen=True)
class Reply:
    cid: int
    error: str | None  # None: done; else the sentence SessionError carried


@dataclass(frozen=True)
class Log:
    name: str
    level: int
    text: str
    exc: str | None


@dataclass(frozen=True)
class Status:
    status: SessionStatus


@dataclass(frozen=True)
class Emitted:
    event: Event


@dataclass(frozen=True)
class Play:
    data: bytes
    rate: int
    channels: int
    samples: int


@dataclass(frozen=True)
class PlayEnd:
    """The agent stopped speaking: the player plays out its tail."""


@dataclass(frozen=True)
class Flush:
    pass


@dataclass(frozen=True)
class Volume:
    volume: float


@dataclass(frozen=True)
class Over:
    """The child's session has ended: retire it."""


@dataclass(frozen=True)
class OpenReader:
    rid: int
    start: int


@dataclass(frozen=True)
class CloseReader:
    rid: int


@dataclass(frozen=True)
class Closed:
    pass


@dataclass(frozen=True)
class Beat:
    pass


ToChild = Hello | Call | Close
ToDaemon = (Ready | StartFailed | Reply | Log | Status | Emitted | Play | PlayEnd | Flush | Volume | Over
            | OpenReader | CloseReader | Closed | Beat)
Message = ToChild | ToDaemon
MESSAGE_TYPES: tuple[type, ...] = (Hello, Call, Close, Ready, StartFailed, Reply, Log, Status, Emitted,
                                   Play, PlayEnd, Flush, Volume, Over, OpenReader, CloseReader, Closed, Beat)
