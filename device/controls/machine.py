"""The device state machine: one pure transition function from (snapshot, event, now) to (snapshot, effects).

What a snapshot holds — four facts that vary independently, never a flag that repeats the state:

- `link`: where the session is, as the supervisor reports it — `Down`, `Connecting`, `Up(agent)`,
  `Reconnecting(agent)` or `Failed(reason, …)`. "Session up" is `link` not being `Down`/`Failed`.
- `muted`: the user's mute choice. It outlives sessions (a smart speaker muted before a reconnect stays muted),
  so it cannot be a state of the link; it is shown as `muted` while nothing more urgent (a failure) is shown.
- `mic_problem`: the audio layer lost the microphone (MicLost … MicRestored); shown as failed(mic-unavailable).
- `turn_open`: push-to-talk only — the user is holding the button and their turn has been started. It decides
  whether a release must end a turn (a release after a long press that already ended the session must not).

And one transient: `cue`, a short LED pattern laid over the state for a moment — `heard` when the wake word
was heard (before "connecting" shows), `over` when a conversation ended by itself (the follow-up window closed)
— cleared by the machine's own `cue` timer.

Beside them, `session` numbers the sessions the machine asked for: `StartSession` carries the number, the
supervisor stamps it on every report, and a report about an earlier session (an end confirmed after a new
press) is stale and dropped before the table sees it.

The state a user sees (`Snapshot.state`) is derived, in the order of the official SDKs (components-js
`useAgent`): failed; muted; connecting; pre-connect-buffering while joined and no agent state yet; else the
agent's `lk.agent.state`. `alerting` is the age of a failure quantised by our own timer: the LEDs fast-blink
while it is true and dim afterwards.

The table `TABLE` is keyed by (link kind, event type) and written as a grid, one row per event type; the action
table `ACTIONS` does the same for what a button gesture means in the configured profile. Every cell names a
handler or `ignore` on purpose; `tests/controls/test_machine.py` proves both grids are total.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from device.core.modes import GESTURE_ACTIONS, GESTURES, Mode, get_mode
from device.core.vocabulary import (
    CONVERSATION_OVER,
    AgentState,
    AgentStateChanged,
    ArmTimer,
    CancelTimer,
    CancelTurn,
    ChangeVolume,
    DeviceState,
    DoublePressed,
    Effect,
    EndRequested,
    EndSession,
    EndTurn,
    Event,
    FailureReason,
    Interrupt,
    LongPressed,
    MicLost,
    MicRestored,
    MuteRequested,
    PlayEarcon,
    Pressed,
    Released,
    SessionBuffering,
    SessionConnecting,
    SessionEnded,
    SessionEvent,
    SessionFailed,
    SessionReconnected,
    SessionReconnecting,
    SetMuted,
    StartRequested,
    StartSession,
    StartTurn,
    TimerFired,
    Trigger,
    WakeWordHeard,
)

log = logging.getLogger("device.controls.machine")

FAILED_ALERT_TIMER = "failed-alert"
FAILED_ALERT_S = 5.0  # the fast blink lasts this long, then the LED dims (the failure is still shown)
CUE_TIMER = "cue"
VOLUME_STEP = 0.1

# lk.agent.state → what we show ("idle" is pending, like initializing: see AgentState).
AGENT_STATES: Mapping[AgentState, DeviceState] = MappingProxyType({
    AgentState.INITIALIZING: DeviceState.INITIALIZING,
    AgentState.IDLE: DeviceState.INITIALIZING,
    AgentState.LISTENING: DeviceState.LISTENING,
    AgentState.THINKING: DeviceState.THINKING,
    AgentState.SPEAKING: DeviceState.SPEAKING,
})


# ---- the link: where the session is -----------------------------------------------------------------------


@dataclass(frozen=True)
class Down:
    """No session, and none being attempted."""


@dataclass(frozen=True)
class Connecting:
    """A session was asked for; token fetch and room join are under way."""


@dataclass(frozen=True)
class Up:
    """Joined with the mic published; `agent` is the agent's last state (None = not there yet: buffering)."""

    agent: DeviceState | None = None


@dataclass(frozen=True)
class Reconnecting:
    """The connection dropped and the SDK is resuming; `agent` is remembered for when it comes back."""

    agent: DeviceState | None = None


@dataclass(frozen=True)
class Failed:
    """The supervisor reported a failure. `retry_in_s` set: it will try again by itself."""

    reason: FailureReason
    detail: str = ""
    retry_in_s: float | None = None
    since: float = 0.0


Link = Down | Connecting | Up | Reconnecting | Failed
LINKS: tuple[type, ...] = (Down, Connecting, Up, Reconnecting, Failed)


class Cue(StrEnum):
    """A moment's LED pattern over the state (see `controls/leds.py`)."""

    HEARD = "heard"  # the wake word was heard
    OVER = "over"  # the conversation ended by itself


CUE_S: Mapping[Cue, float] = MappingProxyType({Cue.HEARD: 0.5, Cue.OVER: 1.0})


# ---- the profile: what each gesture means -----------------------------------------------------------------

_GESTURE_OF: Mapping[type, str] = MappingProxyType(
    {Pressed: "press", Released: "release", LongPressed: "long_press", DoublePressed: "double_press"}
)

@dataclass(frozen=True)
class Profile:
    """The configured mode and its gesture map (the mode's defaults, device/core/modes.py, overridden by
    `controls.gestures`)."""

    mode: Mode
    gestures: tuple[tuple[str, str], ...]

    @classmethod
    def for_mode(cls, name: str, overrides: Mapping[str, str] | None = None) -> Profile:
        spec = get_mode(name)
        merged = dict(spec.gestures)
        for gesture, action in (overrides or {}).items():
            if gesture not in GESTURES or action not in GESTURE_ACTIONS:
                raise ValueError(f"controls.gestures: {gesture!r} → {action!r} is not a known gesture and action")
            merged[gesture] = action
        return cls(spec, tuple(sorted(merged.items())))

    def action_for(self, gesture: str) -> str:
        return dict(self.gestures).get(gesture, "none")


# ---- the snapshot ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    profile: Profile
    link: Link = field(default_factory=Down)
    muted: bool = False
    mic_problem: str | None = None  # detail of MicLost while the mic is gone
    turn_open: bool = False
    alerting: bool = False  # a shown failure is younger than FAILED_ALERT_S
    session: int = 0  # the number of the latest session asked for (0: none yet)
    cue: Cue | None = None  # a moment's LED pattern over the state, until the `cue` timer

    @property
    def state(self) -> DeviceState:
        """The one state a user sees (LEDs, status, logs)."""
        if self.mic_problem is not None or isinstance(self.link, Failed):
            return DeviceState.FAILED
        if self.muted:
            return DeviceState.MUTED
        match self.link:
            case Down():
                return DeviceState.IDLE
            case Connecting():
                return DeviceState.CONNECTING
            case Up(agent=None):
                return DeviceState.PRECONNECT_BUFFERING
            case Up(agent=DeviceState() as agent):
                return agent
            case Reconnecting():
                return DeviceState.RECONNECTING
        raise AssertionError(self.link)  # pragma: no cover - Link is closed

    @property
    def reason(self) -> FailureReason | None:
        """Why the state is failed (a session failure outranks a lost mic: it needs the user's attention more)."""
        if isinstance(self.link, Failed):
            return self.link.reason
        if self.mic_problem is not None:
            return FailureReason.MIC_UNAVAILABLE
        return None

    @property
    def detail(self) -> str:
        if isinstance(self.link, Failed):
            return self.link.detail
        return self.mic_problem or ""

    @property
    def session_up(self) -> bool:
        return isinstance(self.link, Connecting | Up | Reconnecting)


@dataclass(frozen=True)
class ClientFlags:
    """The flags of the official SDKs' agent state (components-js `useAgent`), derived from the link so that a
    muted or failed display does not hide what the session is doing: `can_listen` — the mic reaches an agent (or
    its pre-connect buffer); `is_pending` — on its way (connecting, reconnecting, agent initialising);
    `is_connected` — the agent is there and working; `is_finished` — no session (ended or failed)."""

    can_listen: bool = False
    is_pending: bool = False
    is_connected: bool = False
    is_finished: bool = True


_WORKING = (DeviceState.LISTENING, DeviceState.THINKING, DeviceState.SPEAKING)


def client_flags(snap: Snapshot) -> ClientFlags:
    link = snap.link
    up = isinstance(link, Up)
    agent = link.agent if isinstance(link, Up) else None
    return ClientFlags(
        can_listen=up and agent in (None, *_WORKING) and not snap.muted and snap.mic_problem is None,
        is_pending=isinstance(link, Connecting | Reconnecting) or (up and agent is DeviceState.INITIALIZING),
        is_connected=up and agent in _WORKING,
        is_finished=isinstance(link, Down | Failed),
    )


def initial(mode: str, gestures: Mapping[str, str] | None = None) -> Snapshot:
    """The snapshot at boot: no session, unmuted. A mode that starts at boot then gets StartRequested."""
    return Snapshot(profile=Profile.for_mode(mode, gestures))


# ---- handlers: (snapshot, event, now) → (snapshot, effects) ----------------------------------------------

Result = tuple[Snapshot, list[Effect]]
Handler = Callable[[Snapshot, Event, float], Result]


def ignore(snap: Snapshot, event: Event, now: float) -> Result:
    """Deliberately nothing: the event means nothing in this state (often a stale report after we ended)."""
    return snap, []


def _trigger(event: Event) -> Trigger:
    return Trigger.COMMAND if isinstance(event, StartRequested) else Trigger.BUTTON


def _with_cue(snap: Snapshot, cue: Cue, effects: list[Effect]) -> Result:
    return replace(snap, cue=cue), [*effects, ArmTimer(CUE_TIMER, CUE_S[cue])]


MUTED_START = ("the device is muted: a session now would open a room the mic cannot reach; "
               "unmute first (the mute button, or `voice-device ctl unmute`)")


def start_refused(snap: Snapshot) -> str | None:
    """Why a start (a press, `ctl start`, the wake word) must not open a room now, or None. Muted, a session
    would be a room the display does not show (it shows `muted`) with an agent billed for nothing; only
    `always_on`, whose room is permanent and whose button is the mute switch, keeps a room while muted."""
    if snap.muted and not snap.profile.mode.keeps_session:
        return MUTED_START
    return None


def _refuse(snap: Snapshot, why: str) -> Result:
    log.info("start refused: %s", why)
    return snap, [PlayEarcon("error")]


def begin_session(snap: Snapshot, event: Event, now: float) -> Result:
    # Show connecting at once (the press must feel instant); the supervisor confirms with SessionConnecting.
    if (why := start_refused(snap)) is not None:
        return _refuse(snap, why)
    n = snap.session + 1
    return replace(snap, link=Connecting(), session=n), [StartSession(n, trigger=_trigger(event)),
                                                         PlayEarcon("listening")]


def _wake_applies(snap: Snapshot) -> bool:
    # Mute means mute: the daemon stops listening while muted, and a detection already on its way is dropped here.
    return snap.profile.mode.wake_word and not snap.muted


def wake(snap: Snapshot, event: Event, now: float) -> Result:
    """The wake word with no conversation running: one begins where the wake phrase was (or ended)."""
    assert isinstance(event, WakeWordHeard)
    if not _wake_applies(snap):
        return snap, []
    n = snap.session + 1
    start = StartSession(n, mark=event.mark, trigger=Trigger.WAKE_WORD, listen_from=event.phrase_end)
    return _with_cue(replace(snap, link=Connecting(), session=n), Cue.HEARD, [start, PlayEarcon("wake")])


def _agent_speaking(snap: Snapshot) -> bool:
    return isinstance(snap.link, Up) and snap.link.agent is DeviceState.SPEAKING


def wake_barge_in(snap: Snapshot, event: Event, now: float) -> Result:
    """The wake word during a conversation: while the agent speaks it interrupts it; otherwise the device is
    listening already."""
    if not _wake_applies(snap) or not _agent_speaking(snap):
        return snap, []
    return _with_cue(snap, Cue.HEARD, [Interrupt(), PlayEarcon("wake")])


def interrupt(snap: Snapshot, event: Event, now: float) -> Result:
    """A press while the agent speaks stops it (no push-to-talk turns: see `Interrupt`)."""
    if not _agent_speaking(snap):
        return snap, []
    return snap, [Interrupt(), PlayEarcon("listening")]


def begin_session_and_turn(snap: Snapshot, event: Event, now: float) -> Result:
    if (why := start_refused(snap)) is not None:
        return _refuse(snap, why)
    n = snap.session + 1
    effects: list[Effect] = [StartSession(n), StartTurn(n), PlayEarcon("listening")]
    return replace(snap, link=Connecting(), turn_open=True, session=n), effects


def begin_turn(snap: Snapshot, event: Event, now: float) -> Result:
    """Start (or, while the agent speaks, barge in with) the user's turn."""
    if snap.turn_open:
        return snap, []
    return replace(snap, turn_open=True), [StartTurn(snap.session), PlayEarcon("listening")]


def end_turn(snap: Snapshot, event: Event, now: float) -> Result:
    if not snap.turn_open:
        return snap, []
    return replace(snap, turn_open=False), [EndTurn(), PlayEarcon("stopped")]


def cancel_turn(snap: Snapshot, event: Event, now: float) -> Result:
    if not snap.turn_open:
        return snap, []
    return replace(snap, turn_open=False), [CancelTurn(), PlayEarcon("stopped")]


def end_session(snap: Snapshot, event: Event, now: float) -> Result:
    """We end it ourselves: idle at once; the supervisor's later SessionEnded is then ignored."""
    reason = event.reason if isinstance(event, EndRequested) else "button"
    return replace(snap, link=Down(), turn_open=False), [EndSession(reason), PlayEarcon("stopped")]


def toggle_mute(snap: Snapshot, event: Event, now: float) -> Result:
    return replace(snap, muted=not snap.muted), [SetMuted(not snap.muted)]


def set_mute(snap: Snapshot, event: Event, now: float) -> Result:
    assert isinstance(event, MuteRequested)
    if event.muted == snap.muted:
        return snap, []
    return replace(snap, muted=event.muted), [SetMuted(event.muted)]


def connecting(snap: Snapshot, event: Event, now: float) -> Result:
    return replace(snap, link=Connecting()), []


def connecting_after_end(snap: Snapshot, event: Event, now: float) -> Result:
    """Down: a new attempt of the session we ended ourselves is stale — its retry fired before the end reached
    the supervisor (seen under load: `ctl end` right after a failure, then the retry's report). Every session the
    device asks for has a number of its own, so only an unnumbered report moves the link on."""
    assert isinstance(event, SessionEvent)
    if event.session is not None and event.session == snap.session:
        log.debug("a retry of the ended session dropped event=%r", event)
        return snap, []
    return connecting(snap, event, now)


def buffering(snap: Snapshot, event: Event, now: float) -> Result:
    return replace(snap, link=Up(agent=None)), []


def agent_state(snap: Snapshot, event: Event, now: float) -> Result:
    assert isinstance(event, AgentStateChanged)
    shown = AGENT_STATES.get(event.state)
    if shown is None:
        log.debug("agent state ignored state=%s", event.state)
        return snap, []
    return replace(snap, link=Up(agent=shown)), []


def remember_agent(snap: Snapshot, event: Event, now: float) -> Result:
    assert isinstance(event, AgentStateChanged) and isinstance(snap.link, Reconnecting)
    shown = AGENT_STATES.get(event.state)
    return (snap, []) if shown is None else (replace(snap, link=Reconnecting(agent=shown)), [])


def reconnecting(snap: Snapshot, event: Event, now: float) -> Result:
    agent = snap.link.agent if isinstance(snap.link, Up | Reconnecting) else None
    return replace(snap, link=Reconnecting(agent=agent)), []


def reconnected(snap: Snapshot, event: Event, now: float) -> Result:
    agent = snap.link.agent if isinstance(snap.link, Reconnecting) else None
    return replace(snap, link=Up(agent=agent)), []


def failed(snap: Snapshot, event: Event, now: float) -> Result:
    assert isinstance(event, SessionFailed)
    link = Failed(event.reason, event.detail, event.retry_in_s, since=now)
    return replace(snap, link=link, turn_open=False), []


def ended(snap: Snapshot, event: Event, now: float) -> Result:
    assert isinstance(event, SessionEnded)
    down = replace(snap, link=Down(), turn_open=False)
    if snap.profile.mode.follow_up and event.reason in CONVERSATION_OVER:
        return _with_cue(down, Cue.OVER, [PlayEarcon("conversation_end")])
    return down, [PlayEarcon("stopped")]


def mic_lost(snap: Snapshot, event: Event, now: float) -> Result:
    assert isinstance(event, MicLost)
    return replace(snap, mic_problem=event.detail or "lost"), []


def mic_restored(snap: Snapshot, event: Event, now: float) -> Result:
    return replace(snap, mic_problem=None), []


def timer(snap: Snapshot, event: Event, now: float) -> Result:
    assert isinstance(event, TimerFired)
    if event.name == FAILED_ALERT_TIMER:
        return replace(snap, alerting=False), []
    if event.name == CUE_TIMER:
        return replace(snap, cue=None), []
    return snap, []  # a timer we no longer care about (cancelled too late): harmless


def gesture(snap: Snapshot, event: Event, now: float) -> Result:
    """A button gesture: the main button means what the profile says; the extra buttons have fixed jobs."""
    assert isinstance(event, Pressed | Released | LongPressed | DoublePressed)
    match event.button, event:
        case "main", _:
            action = snap.profile.action_for(_GESTURE_OF[type(event)])
            return ACTIONS[(type(snap.link), action)](snap, event, now)
        case "mute", Pressed():
            return toggle_mute(snap, event, now)
        case "volume_up", Pressed():
            return snap, [ChangeVolume(+VOLUME_STEP)]
        case "volume_down", Pressed():
            return snap, [ChangeVolume(-VOLUME_STEP)]
    return snap, []


# ---- the tables --------------------------------------------------------------------------------------------

_ = ignore


def _grid(rows: list[tuple[object, ...]]) -> dict[tuple[type, object], Handler]:
    table: dict[tuple[type, object], Handler] = {}
    for key, *cells in rows:
        assert len(cells) == len(LINKS), key
        for link, handler in zip(LINKS, cells, strict=True):
            assert callable(handler), (key, link)
            table[(link, key)] = handler
    return table


# What a gesture's action does, per link.
ACTIONS: dict[tuple[type, object], Handler] = _grid([
    # action            Down                     Connecting     Up             Reconnecting   Failed
    ("start_turn",      begin_session_and_turn,  begin_turn,    begin_turn,    begin_turn,    begin_session_and_turn),
    ("end_turn",        end_turn,                end_turn,      end_turn,      end_turn,      end_turn),
    ("cancel_turn",     cancel_turn,             cancel_turn,   cancel_turn,   cancel_turn,   cancel_turn),
    ("start_session",   begin_session,           _,             _,             _,             begin_session),
    ("end_session",     _,                       end_session,   end_session,   end_session,   end_session),
    ("toggle_session",  begin_session,           end_session,   end_session,   end_session,   begin_session),
    ("toggle_mute",     toggle_mute,             toggle_mute,   toggle_mute,   toggle_mute,   toggle_mute),
    ("mute_or_start",   begin_session,           toggle_mute,   toggle_mute,   toggle_mute,   toggle_mute),
    ("converse",        begin_session,           _,             interrupt,     _,             begin_session),
    ("none",            _,                       _,             _,             _,             _),
])  # fmt: skip

# The device table: every event type, per link. A press in Failed retries (start actions → StartSession), except
# on always_on, where the press stays the mute switch (a privacy control must always work; the supervisor retries);
# there it starts a session only when none runs (after an explicit end).
# Down ignores supervisor reports: they are stale after we ended the session ourselves (a retry of it too).
# Failed ignores SessionEnded so a failure stays on show until the user or a retry moves on.
# The wake word (only in a mode with `wake_word`, never while muted) starts a conversation from Down or Failed,
# interrupts the agent while it speaks (Up), and means nothing while a session is being joined.
TABLE: dict[tuple[type, object], Handler] = _grid([
    # event               Down           Connecting     Up             Reconnecting    Failed
    (Pressed,             gesture,       gesture,       gesture,       gesture,        gesture),
    (Released,            gesture,       gesture,       gesture,       gesture,        gesture),
    (LongPressed,         gesture,       gesture,       gesture,       gesture,        gesture),
    (DoublePressed,       gesture,       gesture,       gesture,       gesture,        gesture),
    (StartRequested,      begin_session, _,             _,             _,              begin_session),
    (EndRequested,        _,             end_session,   end_session,   end_session,    end_session),
    (MuteRequested,       set_mute,      set_mute,      set_mute,      set_mute,       set_mute),
    (WakeWordHeard,       wake,          _,             wake_barge_in, _,              wake),
    (SessionConnecting,   connecting_after_end, _,      connecting,    connecting,     connecting),
    (SessionBuffering,    _,             buffering,     buffering,     buffering,      buffering),
    (AgentStateChanged,   _,             agent_state,   agent_state,   remember_agent, _),
    (SessionReconnecting, _,             reconnecting,  reconnecting,  _,              reconnecting),
    (SessionReconnected,  _,             _,             _,             reconnected,    reconnected),
    (SessionFailed,       _,             failed,        failed,        failed,         failed),
    (SessionEnded,        _,             ended,         ended,         ended,          _),
    (MicLost,             mic_lost,      mic_lost,      mic_lost,      mic_lost,       mic_lost),
    (MicRestored,         mic_restored,  mic_restored,  mic_restored,  mic_restored,   mic_restored),
    (TimerFired,          timer,         timer,         timer,         timer,          timer),
])  # fmt: skip

EVENT_TYPES: tuple[type, ...] = tuple(dict.fromkeys(key for _link, key in TABLE if isinstance(key, type)))


def transition(snap: Snapshot, event: Event, now: float) -> Result:
    """Apply one event. Pure: the same inputs give the same outputs; `now` is the caller's (fake) clock.

    After the table's handler, entering the failed display plays the error earcon and arms the alert timer;
    leaving it cancels the timer.
    """
    handler = TABLE.get((type(snap.link), type(event)))
    if handler is None:
        raise TypeError(f"not an event of the device state machine: {event!r}")
    if isinstance(event, SessionEvent) and event.session not in (None, snap.session):
        log.debug("stale session report dropped event=%r current=%d", event, snap.session)
        return snap, []
    new, effects = handler(snap, event, now)
    return _on_failure_change(snap, new, effects)


def _on_failure_change(old: Snapshot, new: Snapshot, effects: list[Effect]) -> Result:
    was, is_failed = old.state is DeviceState.FAILED, new.state is DeviceState.FAILED
    # A new failure report (not the same one still on show) restarts the alert.
    fresh = is_failed and (not was or (isinstance(new.link, Failed) and new.link != old.link))
    if fresh:
        rearm = [CancelTimer(FAILED_ALERT_TIMER)] if was else []
        alert: list[Effect] = [PlayEarcon("error"), ArmTimer(FAILED_ALERT_TIMER, FAILED_ALERT_S)]
        return replace(new, alerting=True), [*effects, *rearm, *alert]
    if was and not is_failed:
        return replace(new, alerting=False), [*effects, CancelTimer(FAILED_ALERT_TIMER)]
    return new, effects
