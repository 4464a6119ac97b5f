"""Where the session's mic audio goes next: a pure function from what the room has told the uplink to one step.

The uplink (`preconnect.py`) keeps the facts — the route its chunks take now, whether a publication and an
agent are there, whether the connection is resuming — and asks `decide` what to do; it carries the step out,
updates the facts and asks again until the answer is `None`. `tests/session/test_routing.py` reads as its table.

| when (in this order)                                                 | step          | route after   |
|----------------------------------------------------------------------|---------------|---------------|
| not attached to a publication                                        | —             |               |
| reconnecting, audio going out (live or stream)                       | HOLD          | buffer        |
| resumed (same SID), agent still subscribed, after a hold             | RESUME_LIVE   | live          |
| republished (a full restart: new SID) while live, pre-connect on     | REBUFFER      | buffer        |
| reconnecting                                                         | —             |               |
| pre-connect off, reconnected: after a hold, or republished           | LIVE_AGAIN    | live          |
| buffering, the SID and an agent there, pre-connect on                | OPEN_STREAM   | stream (live) |
| streaming, the stream's agent gone or replaced                       | ABANDON       | buffer        |
| streaming, the agent subscribed, no start_turn awaiting its answer   | GO_LIVE       | live          |
| streaming, the stream's time budget spent                            | GO_LIVE_LATE  | live          |

Why a pending turn holds the stream open: a push-to-talk agent keeps its audio input off until its `start_turn`
RPC runs, and livekit-agents pushes the pre-connect buffer into that input when the stream completes — a buffer
completed before the agent took the turn is discarded whole (room_io drops frames while input is detached). So
in push-to-talk the stream closes only once the agent has answered `start_turn`, bounded by the stream's budget.

Why pre-connect off goes straight back to live after any reconnect: there is no stream to carry what was held
(the track was published without the pre-connect flag, so the agent expects none), and waiting for the agent's
subscription would leave the mic in the buffer for good when the agent had subscribed before the drop (a resume
does not repeat it) — "listening" on the device while the agent hears nothing. What was held is dropped, and
counted: pushed into the live track it would make everything after it late by as much.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Route(StrEnum):
    DISCARD = "discard"  # pre-connect off and not yet published (a mute does not change the route)
    BUFFER = "buffer"  # no agent yet: kept in a bounded buffer
    STREAM = "stream"  # LiveKit's pre-connect byte stream to the agent
    LIVE = "live"  # the published mic track


class Step(StrEnum):
    HOLD = "hold"  # the connection dropped: close any stream, keep what is said (bounded) for a re-send
    RESUME_LIVE = "resume-live"  # resumed with the same SID: drop the held audio, the live track goes on
    REBUFFER = "rebuffer"  # a new SID: buffer until the agent is there for it
    OPEN_STREAM = "open-stream"  # send the buffer (and what follows) as pre-connect audio
    ABANDON = "abandon"  # the stream's agent left: close it, buffer for the next one
    GO_LIVE = "go-live"  # the agent subscribed: close the stream, hand over to the live track
    GO_LIVE_LATE = "go-live-late"  # the stream's budget is spent: close it and go live anyway
    LIVE_AGAIN = "live-again"  # pre-connect off, reconnected: drop what was held, the live track goes on


@dataclass(frozen=True)
class Facts:
    route: Route
    attached: bool = False  # a connect attempt published the mic
    preconnect: bool = True  # session.preconnect
    sid: bool = False  # the publication's SID is known
    agent: str | None = None  # the active agent
    stream_agent: str | None = None  # whom the open stream goes to
    subscribed: bool = False  # the agent subscribed to the mic track
    expired: bool = False  # the open stream's time budget is spent
    reconnecting: bool = False
    republished: bool = False  # a full restart re-issued the SID and no stream has named it yet
    held: bool = False  # audio is being held since a reconnect
    turn_pending: bool = False  # push-to-talk: a start_turn is on its way and not answered yet (agent input off)


def decide(f: Facts) -> Step | None:
    """The next step for these facts, or None when the route is where it should be."""
    if not f.attached:
        return None
    if f.reconnecting and f.route in (Route.LIVE, Route.STREAM):
        return Step.HOLD
    if not f.reconnecting and f.held and not f.republished and f.subscribed:
        return Step.RESUME_LIVE
    if f.republished and f.route is Route.LIVE and f.preconnect:
        return Step.REBUFFER
    if f.reconnecting:
        return None
    if not f.preconnect and (f.held or f.republished):
        return Step.LIVE_AGAIN
    if f.route is Route.BUFFER and f.sid and f.agent and f.preconnect:
        return Step.OPEN_STREAM
    if f.route is Route.STREAM:
        if f.agent is None or f.stream_agent != f.agent:
            return Step.ABANDON
        if f.subscribed and not f.turn_pending:
            return Step.GO_LIVE
        if f.expired:
            return Step.GO_LIVE_LATE
    return None
