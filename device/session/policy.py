"""The session policy: a pure state machine (ESP32 `engine.c` style). Inputs in, actions out, no I/O.

Phases: IDLE → CONNECTING → CONNECTED ⇄ RECONNECTING, and WAITING (backoff before a retry). Timers (`TimerName`)
are actions (`Arm`/`Cancel`) and come back as `TimerDue` inputs; the shell arms them on its injectable clock.

`TABLE` is keyed by (phase, input type) and written as a grid, one row per input type, like the device machine's:
every cell names a handler or `ignore` on purpose, `tests/session/test_policy.py` proves the grid total, and an
input the policy does not know raises `TypeError`.

| timer        | armed when                                   | fires →                                          |
|--------------|----------------------------------------------|--------------------------------------------------|
| agent        | connected (whoever dispatches the agent)     | did-not-join / not-initialized failure           |
| agent-gone   | the agent left (grace, or after a rejoin)    | agent-left failure (or ended if it left cleanly) |
| idle         | agent listening, no turn held (ptt / toggle) | end "idle-timeout" (user speech re-arms it)       |
|              | wake_word: the follow-up window              | end "follow-up-over"                             |
| max          | session start (ptt / toggle / wake_word)     | end "max-length"                                 |
| retry        | a failure with budget left                   | connect again                                    |
| preconnect   | connected, no agent yet                      | drop the pre-connect buffer                      |
| reconnect    | the SDK reconnecting (reconnect_timeout_s)   | connection-lost failure: a fresh token, a retry  |

In a mode with `follow_up` (wake_word) the idle timer is the follow-up window: `wake_word.follow_up_s` after the
agent goes back to listening (its clock restarts each time the agent finishes speaking; the user's speech, judged
by a voice activity detector, re-arms it) — except before the agent's first answer, when it is at least
`FIRST_ANSWER_S`: the agent is still taking the command from the pre-connect buffer. The agent reporting the user
`away` (`lk.agent.events`) ends the conversation too, once the agent has finished what it is saying.
The policy also remembers whether the user spoke at all (`SessionEnded.heard_user`; speech heard while the agent
speaks does not count: it may be the agent's own voice, echoed).

Besides connecting and ending, the policy makes every other decision of a session, and the supervisor carries
them out: which participant is the session's agent (the first `AgentSeen`; another agent is neither followed nor
obeyed), its state and where it is heard from (`agent_protocol`: livekit-agents' session host on `lk.agent.session`
once the agent speaks it — `AgentSpoke`, from the session's agent only — else the older signals, its
`lk.agent.state` attribute and `lk.agent.events`; never both, so one change is one transition), when to ask the
agent its state (`AskAgentState`: after a resume, or when it comes back, if it speaks the session protocol), the
press-to-listening latency (`PressMade` … `PressAnswered`: when a press counts as heard), barge-in
(`StopPlayback` with turns, `barging` without), when queued turn calls go out (`FlushTurns`, only to a ready
agent), whether a teardown keeps buffering for a retry, and when the session's uplink opens and closes.

The grace on `agent-gone` exists because a full SDK restart reports every remote participant disconnected
BEFORE it reports `reconnecting` (rust-sdks `handle_restarting`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from device.config.schema import SessionConfig
from device.core.backoff import Backoff
from device.core.vocabulary import (
    AgentState,
    AgentStateChanged,
    EndReason,
    Event,
    FailureReason,
    SessionBuffering,
    SessionConnecting,
    SessionEnded,
    SessionFailed,
    SessionReconnected,
    SessionReconnecting,
)
from device.session.agent_session import (
    AgentProtocol,
    AgentStateNews,
    ErrorNews,
    ItemNews,
    News,
    Role,
    SessionStateNews,
    UserStateNews,
)
from device.session.classify import RETRYABLE, classify_disconnect

log = logging.getLogger("device.session.policy")

AGENT_LEFT_GRACE_S = 2.0
FIRST_ANSWER_S = 5.0


class Phase(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    WAITING = "waiting"


class TurnProgress(StrEnum):
    """Where the user's push-to-talk turn is: none waiting for an answer, asked for (its calls queued), or sent to
    an agent — which may die before it answers, and then the agent replacing it is given the turn again."""

    NONE = "none"
    ASKED = "asked"
    SENT = "sent"


class TimerName(StrEnum):
    AGENT = "agent"
    AGENT_GONE = "agent-gone"
    IDLE = "idle"
    MAX = "max"
    RETRY = "retry"
    PRECONNECT = "preconnect"
    RECONNECT = "reconnect"


# ---- inputs ---------------------------------------------------------------------------------------------------


class Input:
    """Base of the policy's inputs."""


@dataclass(frozen=True)
class Begin(Input):
    """A session asked for (`Supervisor.start`): its audio from ring index `mark`, its reports numbered `session`,
    the user's speech counted from `listen_from` (None: the mark). Ignored while one runs, whose number it takes."""

    mark: int
    session: int = 0
    listen_from: int | None = None


@dataclass(frozen=True)
class Start(Input):
    """The connection part of `Begin`: connect, and the session's timers."""


@dataclass(frozen=True)
class Stop(Input):
    reason: str = EndReason.REQUESTED  # an EndReason, or the device's reason for asking


@dataclass(frozen=True)
class ConnectSucceeded(Input):
    pass


@dataclass(frozen=True)
class ConnectFailed(Input):
    reason: FailureReason
    detail: str = ""


@dataclass(frozen=True)
class AgentSeen(Input):
    """A participant the session may take for its agent (`agent.is_session_agent`) is in the room: it connected,
    became active, or was already there. The first one seen is the session's agent; the others are not."""

    identity: str
    name: str = ""  # lk.agent.name
    active: bool = False  # its participant state is ACTIVE (the pre-connect stream may go to it)
    state: AgentState | None = None  # its lk.agent.state


@dataclass(frozen=True)
class AgentAttributesChanged(Input):
    """The attributes of a participant the session may take for its agent changed (`state_changed`:
    lk.agent.state among them); `seen` is what it is now."""

    seen: AgentSeen
    state_changed: bool = False


@dataclass(frozen=True)
class AgentStateReported(Input):
    """The agent's state, by `via`: its `lk.agent.state` attribute, or its session host (`AgentSpoke`). Once the
    agent is heard on `lk.agent.session`, reports by attribute are ignored: one source per agent."""

    state: AgentState
    via: AgentProtocol = AgentProtocol.ATTRIBUTES


@dataclass(frozen=True)
class AgentSpoke(Input):
    """A message on `lk.agent.session` from `identity`, decoded (`agent_session.decode`); only the session's agent
    is heard, and from then on its state, the user's and the transcripts come from there."""

    identity: str
    news: News


@dataclass(frozen=True)
class AgentLeft(Input):
    identity: str
    deliberate: bool = False  # the agent disconnected itself (CLIENT_INITIATED)


@dataclass(frozen=True)
class Disconnected(Input):
    reason_name: str


@dataclass(frozen=True)
class RoomReconnecting(Input):
    pass


@dataclass(frozen=True)
class RoomReconnected(Input):
    pass


@dataclass(frozen=True)
class TimerDue(Input):
    name: TimerName


@dataclass(frozen=True)
class UserSpeech(Input):
    pass


@dataclass(frozen=True)
class UserAway(Input):
    """A participant marked the user away (`lk.agent.events` user_state_changed → away, or `via` the session
    host); only the session's agent counts, and `lk.agent.events` no longer once it speaks `lk.agent.session`."""

    identity: str
    via: AgentProtocol = AgentProtocol.ATTRIBUTES


class TurnKind(StrEnum):
    START = "start"
    END = "end"
    CANCEL = "cancel"


@dataclass(frozen=True)
class TurnAsked(Input):
    """A push-to-talk turn call (`Supervisor.start_turn` / `end_turn` / `cancel_turn`); `turn_calls`: the agent
    takes turn RPCs (`Turns.active`)."""

    kind: TurnKind
    turn_calls: bool = False


@dataclass(frozen=True)
class TurnBegan(Input):
    """The user holds a turn (the turn part of `TurnAsked(START)`): no idle timer meanwhile."""


@dataclass(frozen=True)
class TurnFinished(Input):
    """The held turn is over (the turn part of `TurnAsked(END | CANCEL)`)."""


@dataclass(frozen=True)
class TurnOpened(Input):
    """The agent answered the press's `start_turn` (or the call failed or was dropped)."""


@dataclass(frozen=True)
class Interrupt(Input):
    """Barge-in without turns: the daemon flushed the player; the agent's audio is dropped until it stops
    speaking."""


# ---- actions --------------------------------------------------------------------------------------------------


class Action:
    """Base of what the policy asks the shell to do."""


@dataclass(frozen=True)
class Emit(Action):
    event: Event


@dataclass(frozen=True)
class Connect(Action):
    fresh_token: bool  # bypass the token cache
    new_room: bool  # a new request (fresh room): agents do not rejoin a room that existed before


@dataclass(frozen=True)
class Teardown(Action):
    reason: str
    # a retry follows: the uplink goes on buffering for it (how to tear down, not which teardown: not compared)
    keep_buffering: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class Arm(Action):
    name: TimerName
    delay_s: float


@dataclass(frozen=True)
class Cancel(Action):
    name: TimerName


@dataclass(frozen=True)
class DropBuffer(Action):
    reason: str


@dataclass(frozen=True)
class OpenSession(Action):
    """Open the session's uplink from ring index `mark` (its speech gate from `listen_from`) and count it."""

    mark: int
    listen_from: int


@dataclass(frozen=True)
class CloseSession(Action):
    """The session is over (ended, or failed for good): close its uplink, forget its turns and its room."""


@dataclass(frozen=True)
class PressMade(Action):
    """A press to answer: the shell notes the time on its clock."""


@dataclass(frozen=True)
class PressAnswered(Action):
    """The agent listens for the press noted last: the shell records the latency (`press_to_listening_ms`)."""


@dataclass(frozen=True)
class TakeAgent(Action):
    """`identity` is the session's agent from now on: the one it follows, plays and obeys (a new agent's turn
    support is unknown)."""

    identity: str
    name: str


@dataclass(frozen=True)
class FollowAgent(Action):
    """The agent the mic uplink streams to: the session's agent once it is active, None once it left."""

    identity: str | None


@dataclass(frozen=True)
class AskAgentState(Action):
    """Ask the agent its state on `lk.agent.session` (`get_session_state`): the device may have missed its events.
    The answer comes back as an `AgentSpoke`, or never (the shell waits a bounded time, in the background)."""

    agent: str


@dataclass(frozen=True)
class KeepTranscript(Action):
    """A final turn of the conversation, from the session host's `conversation_item_added`: the user's (spoken or
    typed) or the agent's."""

    role: Role
    text: str


@dataclass(frozen=True)
class StopPlayback(Action):
    """Barge-in with turns: stop playing the agent at once (its start_turn interrupts it)."""


@dataclass(frozen=True)
class QueueTurn(Action):
    kind: TurnKind


@dataclass(frozen=True)
class FlushTurns(Action):
    """The agent is ready for the turn calls queued so far: send them to `agent`."""

    agent: str


_SESSION_TIMERS = (TimerName.AGENT, TimerName.AGENT_GONE, TimerName.IDLE, TimerName.PRECONNECT, TimerName.RECONNECT)


class Policy:
    def __init__(self, cfg: SessionConfig, *, rng: random.Random | None = None, follow_up_s: float = 5.0):
        """`follow_up_s`: `wake_word.follow_up_s`, the idle timer of a mode with `follow_up`."""
        self.cfg = cfg
        profile = cfg.profile
        self.keeps_session = profile.keeps_session
        self.follow_up = profile.follow_up
        self.follow_up_s = follow_up_s
        self.idle_applies = profile.idle_timeout and (self.follow_up or cfg.idle_timeout_s > 0)
        self.max_applies = profile.max_length and cfg.max_session_s > 0
        attempts = 0 if self.keeps_session else cfg.backoff.attempts  # nobody is there to press again
        self.backoff = Backoff(cfg.backoff.base_s, cfg.backoff.cap_s, attempts, rng)
        self.phase = Phase.IDLE
        self.session = 0  # the device machine's number of the running (or last) session; the shell stamps reports
        self.agent: str | None = None  # the session's agent (`AgentSeen`): the one it follows and obeys
        self.agent_ever = False
        self.agent_state: AgentState | None = None
        self.agent_protocol: AgentProtocol | None = None  # what the agent reports itself in (one source per agent)
        self._protocol_of: str | None = None  # the agent `agent_protocol` was learnt from
        self._strangers: set[str] = set()  # who else spoke lk.agent.session (logged once)
        self.agent_left_deliberately = False
        self.auth_retried = False
        self.turn_held = False
        self.turn = TurnProgress.NONE
        self.idle_armed = False
        self.answered = False  # the agent has spoken in this session
        self.away = False  # the agent reported the user away; the session ends once it stops speaking
        self.heard_user = False
        self.press_pending = False  # a press waits for the agent to listen (PressMade … PressAnswered)
        self.barging = False  # interrupted: the agent's audio is dropped until it stops speaking
        self._next_connect = Connect(fresh_token=True, new_room=True)

    # -- the transition function ------------------------------------------------------------------------------

    def handle(self, event: Input) -> list[Action]:
        handler = TABLE.get((self.phase, type(event)))
        if handler is None:
            raise TypeError(f"not an input of the session policy: {event!r}")
        return handler(self, event)

    # -- handlers (each is given only the inputs of its rows in TABLE) ------------------------------------------

    def _ignore(self, event: Input) -> list[Action]:
        return []

    def _begin(self, event: Input) -> list[Action]:
        assert isinstance(event, Begin)
        self.session = event.session
        self.press_pending = True
        listen_from = event.mark if event.listen_from is None else event.listen_from
        return [OpenSession(event.mark, listen_from), PressMade(), *self._start(Start())]

    def _begin_again(self, event: Input) -> list[Action]:
        assert isinstance(event, Begin)
        self.session = event.session  # a start while one runs (e.g. waiting to retry) makes it the session asked for
        log.info("start ignored: a session is already %s", self.phase)
        return []

    def _start(self, event: Input) -> list[Action]:
        self.backoff.reset()
        self.auth_retried = False
        self.turn = TurnProgress.NONE
        self._forget_agent()
        self.answered = self.heard_user = False
        self.phase = Phase.CONNECTING
        actions: list[Action] = [Emit(SessionConnecting()), Connect(fresh_token=True, new_room=True)]
        if self.max_applies:
            actions.append(Arm(TimerName.MAX, self.cfg.max_session_s))
        return actions

    def _stop(self, event: Input) -> list[Action]:
        assert isinstance(event, Stop)
        return self._end(event.reason)

    def _connected(self, event: Input) -> list[Action]:
        self.phase = Phase.CONNECTED
        self.auth_retried = False
        # the agent timer runs whoever dispatches the agent (the device's agent_name or the token server): an
        # agent that never comes is a failure shown, not a device buffering until max_session_s (or for ever)
        actions: list[Action] = [Emit(SessionBuffering()), Arm(TimerName.AGENT, self.cfg.agent_connect_timeout_s)]
        if self.cfg.preconnect:
            actions.append(Arm(TimerName.PRECONNECT, self.cfg.agent_connect_timeout_s))
        return actions

    def _connect_failed(self, event: Input) -> list[Action]:
        assert isinstance(event, ConnectFailed)
        if event.reason is FailureReason.AUTH and not self.auth_retried:
            # the token may simply be stale (a Pi without RTC, a rotated key): one fresh token, then give up
            self.auth_retried = True
            return [Connect(fresh_token=True, new_room=False)]
        return self._fail(event.reason, event.detail, new_room=False)

    def _agent_seen(self, event: Input) -> list[Action]:
        assert isinstance(event, AgentSeen)
        actions: list[Action] = []
        if self.agent is None:
            self.agent = event.identity
            self.agent_ever = True
            self.agent_left_deliberately = False
            actions += [TakeAgent(event.identity, event.name), Cancel(TimerName.AGENT_GONE),
                        Cancel(TimerName.PRECONNECT)]
            if self.turn is TurnProgress.SENT:
                # the agent that had the user's turn is gone (a node or a worker died, the SDK restarted): the new
                # one gets the turn again — opened, so the words re-sent to it count, and closed if the button is up
                log.info("turn given again to agent %s: the agent it was given to is gone", event.identity)
                self.turn = TurnProgress.ASKED
                actions.append(QueueTurn(TurnKind.START))
                if not self.turn_held:
                    actions.append(QueueTurn(TurnKind.END))
            if event.identity != self._protocol_of:
                self.agent_protocol, self._protocol_of = None, event.identity
            elif self.agent_protocol is AgentProtocol.SESSION:
                actions.append(AskAgentState(event.identity))  # back (a full restart): its events were missed
        elif self.agent != event.identity:
            return []  # one agent per session: the first one wins
        if event.active:
            actions.append(FollowAgent(event.identity))
        if event.state is not None:
            actions += self.handle(AgentStateReported(event.state))
        return actions

    def _attributes_changed(self, event: Input) -> list[Action]:
        assert isinstance(event, AgentAttributesChanged)
        seen = event.seen
        if self.agent is None:
            return self._agent_seen(seen)
        if seen.identity == self.agent and event.state_changed and seen.state is not None:
            return self.handle(AgentStateReported(seen.state))
        return []

    def _counts(self, event: AgentStateReported | UserAway) -> bool:
        """Whether a report counts: by the older signals only until the agent speaks `lk.agent.session`."""
        if event.via is AgentProtocol.SESSION:
            return True
        if self.agent_protocol is AgentProtocol.SESSION:
            return False
        if self.agent_protocol is None and self.agent is not None and isinstance(event, AgentStateReported):
            self.agent_protocol = AgentProtocol.ATTRIBUTES
        return True

    def _agent_state_aside(self, event: Input) -> list[Action]:
        """What a report of the agent's state means in any phase: a barge-in is over once the agent stops speaking,
        a press is answered once it listens."""
        assert isinstance(event, AgentStateReported)
        if not self._counts(event):
            return []
        if event.state is not AgentState.SPEAKING and self.barging:
            self.barging = False
            log.info("agent stopped speaking after the interruption state=%s", event.state)
        return self._press_answered() if event.state is AgentState.LISTENING else []

    def _agent_state(self, event: Input) -> list[Action]:
        assert isinstance(event, AgentStateReported)
        if not self._counts(event):
            return []
        actions = self._agent_state_aside(event)
        state = event.state
        if state == self.agent_state:
            return actions
        self.agent_state = state
        actions.append(Emit(AgentStateChanged(state)))
        if state.ready:
            actions.append(Cancel(TimerName.AGENT))
            self.backoff.reset()  # a working session refills the retry budget
        if state in (AgentState.THINKING, AgentState.SPEAKING) and not self.turn_held:
            self.turn = TurnProgress.NONE  # the agent took the turn
        if state is AgentState.SPEAKING:
            self.answered = True
        elif self.away and self.phase is Phase.CONNECTED:
            return actions + self._end(EndReason.USER_AWAY)  # it has said its goodbye
        return actions + self._update_idle() + self._flush_turns()

    def _user_away(self, event: Input) -> list[Action]:
        assert isinstance(event, UserAway)
        if not self.follow_up or event.identity != self.agent or not self._counts(event):
            return []
        if self.agent_state is AgentState.SPEAKING:
            self.away = True
            return []
        return self._end(EndReason.USER_AWAY)

    def _agent_spoke(self, event: Input) -> list[Action]:
        assert isinstance(event, AgentSpoke)
        if event.identity != self.agent:
            if self.agent is None:
                log.debug("lk.agent.session message dropped sender=%s: no agent taken yet", event.identity)
            elif event.identity not in self._strangers:
                self._strangers.add(event.identity)
                log.info("lk.agent.session messages dropped sender=%s: not the session's agent (%s)", event.identity,
                         self.agent)
            return []
        if self.agent_protocol is not AgentProtocol.SESSION:
            self.agent_protocol = AgentProtocol.SESSION
            log.info("agent speaks lk.agent.session agent=%s: its state, the user's and the conversation come from "
                     "there", self.agent)
        via = AgentProtocol.SESSION
        match event.news:
            case AgentStateNews(state):
                return self.handle(AgentStateReported(state, via))
            case UserStateNews(away=True):
                return self.handle(UserAway(event.identity, via))
            case SessionStateNews(state, away):
                actions = self.handle(AgentStateReported(state, via))
                return actions + (self.handle(UserAway(event.identity, via)) if away else [])
            case ItemNews(role, text):
                return [KeepTranscript(role, text)]
            case ErrorNews(message):
                log.warning("agent reports an error agent=%s message=%r", self.agent, message)
        return []

    def _agent_left(self, event: Input) -> list[Action]:
        assert isinstance(event, AgentLeft)
        if event.identity != self.agent:
            return []
        log.info("agent left identity=%s deliberate=%s", event.identity, event.deliberate)
        self.agent = None
        self.agent_state = None
        self.agent_left_deliberately = event.deliberate
        actions: list[Action] = [FollowAgent(None), *self._cancel_idle()]
        if self.phase is Phase.CONNECTED:
            actions.append(Arm(TimerName.AGENT_GONE, AGENT_LEFT_GRACE_S))
        return actions

    def _reconnecting(self, event: Input) -> list[Action]:
        self.phase = Phase.RECONNECTING
        actions: list[Action] = [Emit(SessionReconnecting()), Cancel(TimerName.AGENT_GONE), Cancel(TimerName.AGENT),
                                 *self._cancel_idle()]
        if self.cfg.reconnect_timeout_s > 0:
            # the SDK tries a dead server for ~20 s; a fresh token may name a live one (a fleet's endpoint does)
            actions.append(Arm(TimerName.RECONNECT, self.cfg.reconnect_timeout_s))
        return actions

    def _reconnected(self, event: Input) -> list[Action]:
        self.phase = Phase.CONNECTED
        actions: list[Action] = [Emit(SessionReconnected()), Cancel(TimerName.RECONNECT)]
        if self.agent is None and self.agent_ever:
            # a full restart reported the agent gone; it must come back
            actions.append(Arm(TimerName.AGENT_GONE, self.cfg.agent_connect_timeout_s))
        elif self.agent_state is None or not self.agent_state.ready:
            actions.append(Arm(TimerName.AGENT, self.cfg.agent_connect_timeout_s))
        if self.agent_state is not None:
            actions.append(Emit(AgentStateChanged(self.agent_state)))
        if self.agent is not None and self.agent_protocol is AgentProtocol.SESSION:
            actions.append(AskAgentState(self.agent))  # what it said while the link was down is lost
        return actions + self._update_idle()

    def _disconnected(self, event: Input) -> list[Action]:
        assert isinstance(event, Disconnected)
        ended, failure = classify_disconnect(event.reason_name)
        if ended is not None:
            return self._end(ended)
        assert failure is not None
        return self._fail(failure, f"disconnected: {event.reason_name}", new_room=True)

    def _timer(self, event: Input) -> list[Action]:
        assert isinstance(event, TimerDue)
        match event.name:
            case TimerName.RETRY if self.phase is Phase.WAITING:
                self.phase = Phase.CONNECTING
                return [Emit(SessionConnecting()), self._next_connect]
            case TimerName.MAX:
                return self._end(EndReason.MAX_LENGTH)
            case TimerName.RECONNECT if self.phase is Phase.RECONNECTING:
                return self._fail(FailureReason.CONNECTION_LOST,
                                  f"no reconnect within {self.cfg.reconnect_timeout_s:g} s", new_room=True)
        if self.phase is not Phase.CONNECTED:
            return []
        match event.name:
            case TimerName.AGENT if self.agent_state is None or not self.agent_state.ready:
                if self.agent is not None and self.agent_protocol is None:
                    log.info("agent %s reported no state within %g s: it speaks neither lk.agent.session nor the "
                             "lk.agent.state attribute", self.agent, self.cfg.agent_connect_timeout_s)
                reason = (FailureReason.AGENT_NOT_INITIALIZED if self.agent is not None
                          else FailureReason.AGENT_DID_NOT_JOIN)
                return self._fail(reason, f"after {self.cfg.agent_connect_timeout_s:g} s", new_room=True)
            case TimerName.AGENT_GONE if self.agent is None:
                if self.agent_left_deliberately:
                    return self._end(EndReason.AGENT_ENDED)
                return self._fail(FailureReason.AGENT_LEFT, "", new_room=True)
            case TimerName.IDLE if self.idle_armed:
                return self._end(EndReason.FOLLOW_UP_OVER if self.follow_up else EndReason.IDLE_TIMEOUT)
            case TimerName.PRECONNECT if self.agent is None:
                return [DropBuffer(f"no agent joined within {self.cfg.agent_connect_timeout_s:g} s")]
        return []

    def _user_speech(self, event: Input) -> list[Action]:
        # while the agent speaks, what the mic hears may be its own echo the canceller let through
        self.heard_user = self.heard_user or self.agent_state is not AgentState.SPEAKING
        return self._rearm_idle() if self.idle_armed else []

    def _turn_began(self, event: Input) -> list[Action]:
        self.turn_held = True
        return self._update_idle()

    def _turn_finished(self, event: Input) -> list[Action]:
        self.turn_held = False
        return self._update_idle()

    # ---- press → listening: each press once, when the agent is first listening for it ----------------------
    # A session's first press waits for the agent to join and say `listening`. A later press (push-to-talk turns)
    # usually finds it listening already, after its reply: that press is answered when its `start_turn` call
    # returns (the agent has opened the turn, `TurnOpened`) — or at once when the agent takes no turn calls — not
    # when the agent next says `listening`, which is after its next reply. A press during the agent's reply
    # (barge-in) is answered when the interrupted agent says `listening`.

    def _turn_asked(self, event: Input) -> list[Action]:
        assert isinstance(event, TurnAsked)
        actions: list[Action] = []
        if event.kind is TurnKind.START:
            if self.phase is not Phase.IDLE:
                if not self.press_pending:
                    self.press_pending = True
                    actions.append(PressMade())
                if self.agent_state is AgentState.LISTENING and not event.turn_calls:
                    actions += self._press_answered()  # nothing to open: the agent listens already
            if self.agent_state is AgentState.SPEAKING:
                log.info("barge-in agent=%s", self.agent)
                actions.append(StopPlayback())  # stop playing at once; start_turn interrupts the agent
        if event.kind is TurnKind.CANCEL:
            self.turn = TurnProgress.NONE
        elif event.turn_calls and self.turn is TurnProgress.NONE:
            self.turn = TurnProgress.ASKED
        actions += [QueueTurn(event.kind), *self._flush_turns()]
        return actions + self.handle(TurnBegan() if event.kind is TurnKind.START else TurnFinished())

    def _turn_opened(self, event: Input) -> list[Action]:
        # the agent answered the press's start_turn: it listens for this press
        return self._press_answered() if self.agent_state is AgentState.LISTENING else []

    def _interrupt(self, event: Input) -> list[Action]:
        if self.agent_state is AgentState.SPEAKING and not self.barging:
            self.barging = True
            log.info("barge-in agent=%s: its audio is dropped until it stops speaking", self.agent)
        return []

    # -- helpers ----------------------------------------------------------------------------------------------

    def _press_answered(self) -> list[Action]:
        if not self.press_pending:
            return []
        self.press_pending = False
        return [PressAnswered()]

    def _flush_turns(self) -> list[Action]:
        """Turn calls go out only to the session's agent, once it is ready."""
        ready = self.agent_state is not None and self.agent_state.ready
        if self.agent is None or not ready:
            return []
        if self.turn is TurnProgress.ASKED:
            self.turn = TurnProgress.SENT
        return [FlushTurns(self.agent)]

    def _update_idle(self) -> list[Action]:
        want = (
            self.idle_applies
            and self.phase is Phase.CONNECTED
            and self.agent_state is AgentState.LISTENING
            and not self.turn_held
        )
        if want and not self.idle_armed:
            return self._rearm_idle()
        if not want and self.idle_armed:
            return self._cancel_idle()
        return []

    def _rearm_idle(self) -> list[Action]:
        self.idle_armed = True
        return [Arm(TimerName.IDLE, self._idle_s())]

    def _idle_s(self) -> float:
        if not self.follow_up:
            return self.cfg.idle_timeout_s
        return self.follow_up_s if self.answered else max(self.follow_up_s, FIRST_ANSWER_S)

    def _cancel_idle(self) -> list[Action]:
        if not self.idle_armed:
            return []
        self.idle_armed = False
        return [Cancel(TimerName.IDLE)]

    def _forget_agent(self) -> None:
        self.agent = self._protocol_of = self.agent_protocol = None
        self._strangers.clear()
        self.agent_ever = self.agent_left_deliberately = False
        self.agent_state = None
        self.idle_armed = False
        self.away = False

    def _fail(self, reason: FailureReason, detail: str, *, new_room: bool) -> list[Action]:
        actions: list[Action] = [Teardown(f"failed: {reason}"), *(Cancel(t) for t in _SESSION_TIMERS)]
        self._forget_agent()
        retry = self.keeps_session or reason in RETRYABLE
        delay = self.backoff.next_delay() if retry else None
        if delay is None:
            self.phase = Phase.IDLE
            self.barging = False
            return [*actions, Cancel(TimerName.MAX), Emit(SessionFailed(reason, detail, None)), CloseSession()]
        self.phase = Phase.WAITING
        self._next_connect = Connect(fresh_token=reason is FailureReason.AUTH or new_room, new_room=new_room)
        actions[0] = Teardown(f"failed: {reason}", keep_buffering=True)
        return [*actions, Arm(TimerName.RETRY, delay), Emit(SessionFailed(reason, detail, delay))]

    def _end(self, reason: str) -> list[Action]:
        """An end — asked for (`ctl end`, a long press, the agent's `device.end_session`, the agent closing the room)
        or a timer's — ends the session for real in every mode; only failures are retried."""
        actions: list[Action] = [Teardown(reason), *(Cancel(t) for t in _SESSION_TIMERS), Cancel(TimerName.RETRY)]
        self._forget_agent()
        self.phase = Phase.IDLE
        self.barging = False
        return [*actions, Cancel(TimerName.MAX), Emit(SessionEnded(reason, heard_user=self.heard_user)), CloseSession()]


# ---- the table ------------------------------------------------------------------------------------------------

Handler = Callable[[Policy, Input], list[Action]]
PHASES: tuple[Phase, ...] = tuple(Phase)
_ = Policy._ignore


def _grid(rows: list[tuple[type[Input], Handler, Handler, Handler, Handler, Handler]]) -> dict[
        tuple[Phase, type[Input]], Handler]:
    return {(phase, row[0]): handler for row in rows for phase, handler in zip(PHASES, row[1:], strict=True)}


P = Policy
# A double start is ignored; a stale report (a connect's result after an end, a room event while waiting to retry)
# is ignored. The agent's own comings and goings are remembered in every phase; its state only while in a room.
TABLE: dict[tuple[Phase, type[Input]], Handler] = _grid([
    # input              IDLE          CONNECTING        CONNECTED          RECONNECTING       WAITING
    (Begin,              P._begin,     P._begin_again,   P._begin_again,    P._begin_again,    P._begin_again),
    (Start,              P._start,     _,                _,                 _,                 _),
    (Stop,               _,            P._stop,          P._stop,           P._stop,           P._stop),
    (ConnectSucceeded,   _,            P._connected,     _,                 _,                 _),
    (ConnectFailed,      _,            P._connect_failed, _,                _,                 _),
    (AgentSeen,          P._agent_seen, P._agent_seen,   P._agent_seen,     P._agent_seen,     P._agent_seen),
    (AgentAttributesChanged, P._attributes_changed, P._attributes_changed, P._attributes_changed,
                         P._attributes_changed, P._attributes_changed),
    (AgentStateReported, P._agent_state_aside, P._agent_state_aside, P._agent_state, P._agent_state,
                         P._agent_state_aside),
    (AgentSpoke,         _,            P._agent_spoke,   P._agent_spoke,    P._agent_spoke,    P._agent_spoke),
    (AgentLeft,          P._agent_left, P._agent_left,   P._agent_left,     P._agent_left,     P._agent_left),
    (RoomReconnecting,   _,            _,                P._reconnecting,   _,                 _),
    (RoomReconnected,    _,            _,                _,                 P._reconnected,    _),
    (Disconnected,       _,            _,                P._disconnected,   P._disconnected,   _),
    (TimerDue,           _,            P._timer,         P._timer,          P._timer,          P._timer),
    (UserSpeech,         P._user_speech, P._user_speech, P._user_speech,    P._user_speech,    P._user_speech),
    (UserAway,           _,            _,                P._user_away,      _,                 _),
    (TurnBegan,          P._turn_began, P._turn_began,   P._turn_began,     P._turn_began,     P._turn_began),
    (TurnFinished,       P._turn_finished, P._turn_finished, P._turn_finished, P._turn_finished, P._turn_finished),
    (TurnAsked,          P._turn_asked, P._turn_asked,   P._turn_asked,     P._turn_asked,     P._turn_asked),
    (TurnOpened,         P._turn_opened, P._turn_opened, P._turn_opened,    P._turn_opened,    P._turn_opened),
    (Interrupt,          P._interrupt, P._interrupt,     P._interrupt,      P._interrupt,      P._interrupt),
])  # fmt: skip

INPUT_TYPES: tuple[type[Input], ...] = tuple(dict.fromkeys(key for _phase, key in TABLE))
