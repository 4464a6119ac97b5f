"""The device state machine as a specification: what each profile does with each gesture and each report."""

from __future__ import annotations

import pytest

from device.config.schema import GESTURE_ACTIONS, MODES
from device.controls.machine import (
    ACTIONS,
    CUE_S,
    CUE_TIMER,
    EVENT_TYPES,
    FAILED_ALERT_S,
    FAILED_ALERT_TIMER,
    LINKS,
    TABLE,
    ClientFlags,
    Cue,
    Profile,
    Snapshot,
    client_flags,
    initial,
    transition,
)
from device.core import vocabulary as events
from device.core.vocabulary import (
    AgentStateChanged,
    ArmTimer,
    CancelTimer,
    ChangeVolume,
    DeviceState,
    DoublePressed,
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


class Device:
    """A snapshot driven through `transition` with a fake clock, remembering every effect."""

    def __init__(self, mode: str, gestures: dict[str, str] | None = None) -> None:
        self.snap: Snapshot = initial(mode, gestures)
        self.now = 1000.0
        self.effects: list[object] = []

    def __call__(self, *evs: Event, after: float = 0.0) -> list[object]:
        self.now += after
        out: list[object] = []
        for ev in evs:
            self.snap, fx = transition(self.snap, ev, self.now)
            out += fx
        self.effects += out
        return out

    @property
    def state(self) -> DeviceState:
        return self.snap.state

    def agent_listening(self) -> None:
        self(SessionConnecting(), SessionBuffering(), AgentStateChanged("initializing"), AgentStateChanged("listening"))


# ---- the table is total ------------------------------------------------------------------------------------


def test_every_event_type_is_handled_or_ignored_in_every_link_state() -> None:
    declared = {c for c in vars(events).values() if isinstance(c, type) and issubclass(c, events.Event)}
    declared -= {events.Event, events.SessionEvent}  # the bases are not events of their own
    assert set(EVENT_TYPES) == declared
    for link in LINKS:
        for ev in declared:
            assert callable(TABLE[(link, ev)]), (link, ev)
    assert len(TABLE) == len(LINKS) * len(declared)


def test_every_gesture_action_has_a_meaning_in_every_link_state() -> None:
    for link in LINKS:
        for action in GESTURE_ACTIONS:
            assert callable(ACTIONS[(link, action)]), (link, action)
    assert len(ACTIONS) == len(LINKS) * len(GESTURE_ACTIONS)


def test_an_unknown_event_is_refused() -> None:
    with pytest.raises(TypeError):
        transition(initial("toggle"), object(), 0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
def test_initial_is_idle_and_unmuted(mode: str) -> None:
    snap = initial(mode)
    assert snap.state is DeviceState.IDLE and not snap.muted and not snap.session_up and snap.reason is None


def test_an_unknown_mode_or_gesture_action_is_a_sentence() -> None:
    with pytest.raises(ValueError, match=r"session\.mode"):
        initial("walkie")
    with pytest.raises(ValueError, match=r"controls\.gestures"):
        Profile.for_mode("toggle", {"press": "explode"})


# ---- kiosk: push to talk -----------------------------------------------------------------------------------


def test_kiosk_press_from_idle_starts_the_session_and_the_turn_at_once() -> None:
    d = Device("push_to_talk")
    fx = d(Pressed())
    assert fx == [StartSession(1), StartTurn(1), PlayEarcon("listening")]
    assert d.state is DeviceState.CONNECTING


def test_kiosk_release_before_agent_joins_ends_the_turn_and_keeps_the_session() -> None:
    d = Device("push_to_talk")
    d(Pressed(), SessionConnecting(), SessionBuffering())
    assert d.state is DeviceState.PRECONNECT_BUFFERING
    assert d(Released()) == [EndTurn(), PlayEarcon("stopped")]
    assert d.state is DeviceState.PRECONNECT_BUFFERING and d.snap.session_up


def test_kiosk_press_while_agent_speaks_barges_in_with_a_new_turn() -> None:
    d = Device("push_to_talk")
    d(Pressed(), Released())
    d.agent_listening()
    d(AgentStateChanged("thinking"), AgentStateChanged("speaking"))
    assert d.state is DeviceState.SPEAKING
    assert d(Pressed()) == [StartTurn(1), PlayEarcon("listening")]


def test_kiosk_long_press_ends_the_session_and_its_release_ends_nothing_more() -> None:
    d = Device("push_to_talk")
    d(Pressed())
    d.agent_listening()
    assert d(LongPressed()) == [EndSession("button"), PlayEarcon("stopped")]
    assert d.state is DeviceState.IDLE
    assert d(Released()) == []
    assert d(SessionEnded("requested"), AgentStateChanged("listening")) == []  # stale reports after our end
    assert d.state is DeviceState.IDLE


def test_kiosk_double_press_does_nothing_by_default() -> None:
    d = Device("push_to_talk")
    d.agent_listening()
    assert d(DoublePressed()) == []


def test_release_without_a_turn_is_ignored() -> None:
    assert Device("push_to_talk")(Released()) == []


# ---- smart speaker: always on ------------------------------------------------------------------------------


def test_speaker_starts_when_the_daemon_asks_and_the_button_mutes() -> None:
    d = Device("always_on")
    assert d(StartRequested()) == [StartSession(1, trigger=Trigger.COMMAND), PlayEarcon("listening")]
    d.agent_listening()
    assert d(Pressed()) == [SetMuted(True)]
    assert d.state is DeviceState.MUTED
    d(AgentStateChanged("speaking"))
    assert d.state is DeviceState.MUTED  # the agent's state is tracked underneath
    assert d(Pressed()) == [SetMuted(False)]
    assert d.state is DeviceState.SPEAKING


def test_speaker_after_an_explicit_end_stays_idle_until_a_press_starts_it_again() -> None:
    d = Device("always_on")
    d(StartRequested())
    d.agent_listening()
    d(EndRequested("control"))
    assert d.state is DeviceState.IDLE
    assert d(Pressed()) == [StartSession(2), PlayEarcon("listening")]  # idle: the press starts, not mutes
    d(SessionFailed(FailureReason.UNREACHABLE, retry_in_s=2.0))
    assert d(Pressed()) == [SetMuted(True)]  # retrying by itself: the press stays the mute switch


def test_speaker_release_and_long_press_do_nothing() -> None:
    d = Device("always_on")
    d(StartRequested())
    d.agent_listening()
    assert d(Released(), LongPressed(), DoublePressed()) == []


def test_mute_survives_a_reconnect_and_a_new_session() -> None:
    d = Device("always_on")
    d(StartRequested())
    d.agent_listening()
    d(Pressed())
    d(SessionReconnecting(), SessionReconnected())
    assert d.snap.muted and d.state is DeviceState.MUTED
    d(SessionEnded("agent-ended"), StartRequested())
    assert d.snap.muted


def test_mute_requested_sets_and_repeats_are_no_ops() -> None:
    d = Device("always_on")
    assert d(MuteRequested(True)) == [SetMuted(True)]
    assert d(MuteRequested(True)) == []
    assert d(MuteRequested(False)) == [SetMuted(False)]


@pytest.mark.parametrize("mode", [m for m in MODES if m != "always_on"])
def test_muted_no_start_opens_a_room_the_display_would_not_show(mode: str) -> None:
    """Muted, the display shows `muted`: a press, `ctl start` or a double-used gesture must not open a room behind it
    (an agent dispatched and billed, `start_turn` called, for a mic that reaches nobody). The start is refused with
    the error earcon; unmuted, the same press starts."""
    d = Device(mode)
    d(MuteRequested(True))
    for ev in (Pressed(), Released(), StartRequested(), HEARD):
        fx = d(ev)
        assert not any(isinstance(e, StartSession | StartTurn) for e in fx), (ev, fx)
        assert d.state is DeviceState.MUTED and not d.snap.session_up
    assert d(Pressed()) == [PlayEarcon("error")]
    d(Released(), MuteRequested(False))
    assert any(isinstance(e, StartSession) for e in d(Pressed()))


def test_always_on_keeps_its_room_while_muted_by_design() -> None:
    """always_on's room is permanent and its button is the mute switch: muted, it still starts (the mic reaches
    nobody; status says `muted` and its session section shows the room)."""
    d = Device("always_on")
    d(MuteRequested(True))
    assert isinstance(d(StartRequested())[0], StartSession)
    assert d.state is DeviceState.MUTED and d.snap.session_up


# ---- appliance: toggle -------------------------------------------------------------------------------------


def test_appliance_press_starts_and_the_next_press_ends() -> None:
    d = Device("toggle")
    assert d(Pressed()) == [StartSession(1), PlayEarcon("listening")]
    assert d(Released()) == []
    d.agent_listening()
    assert d(Pressed()) == [EndSession("button"), PlayEarcon("stopped")]
    assert d.state is DeviceState.IDLE


def test_appliance_session_ended_by_idle_timeout_returns_to_idle_with_the_stopped_earcon() -> None:
    d = Device("toggle")
    d(Pressed())
    d.agent_listening()
    assert d(SessionEnded("idle-timeout")) == [PlayEarcon("stopped")]
    assert d.state is DeviceState.IDLE
    assert d(Pressed())[0] == StartSession(2)


def test_gesture_overrides_replace_the_profile_map() -> None:
    d = Device("toggle", {"double_press": "toggle_mute", "long_press": "end_session"})
    d(Pressed())
    d.agent_listening()
    assert d(DoublePressed()) == [SetMuted(True)]
    assert d(LongPressed())[0] == EndSession("button")


# ---- smart speaker: the wake word -------------------------------------------------------------------------------

HEARD = WakeWordHeard("okay_nabu", 0.93, mark=4800, phrase_end=19200)


def wake_start(n: int = 1) -> list[object]:
    return [StartSession(n, mark=4800, trigger=Trigger.WAKE_WORD, listen_from=19200), PlayEarcon("wake"),
            ArmTimer(CUE_TIMER, CUE_S[Cue.HEARD])]


def test_the_wake_word_starts_a_conversation_where_its_phrase_was_and_says_it_heard_you() -> None:
    d = Device("wake_word")
    assert d(HEARD) == wake_start()
    assert d.state is DeviceState.CONNECTING and d.snap.cue is Cue.HEARD
    assert d(TimerFired(CUE_TIMER), after=CUE_S[Cue.HEARD]) == [] and d.snap.cue is None
    d.agent_listening()
    assert d.state is DeviceState.LISTENING


def test_the_wake_word_while_joining_or_listening_means_nothing_and_while_the_agent_speaks_interrupts_it() -> None:
    d = Device("wake_word")
    d(HEARD)
    assert d(HEARD) == []  # joining: already listening to you
    d.agent_listening()
    assert d(HEARD) == []
    d(AgentStateChanged("thinking"))
    assert d(HEARD) == []
    d(AgentStateChanged("speaking"))
    assert d(HEARD) == [Interrupt(), PlayEarcon("wake"), ArmTimer(CUE_TIMER, CUE_S[Cue.HEARD])]
    assert d.state is DeviceState.SPEAKING  # until the agent itself says it stopped
    d(SessionReconnecting())
    assert d(HEARD) == []


def test_the_wake_word_after_a_failure_starts_afresh() -> None:
    d = Device("wake_word")
    d(HEARD, SessionFailed(FailureReason.AGENT_DID_NOT_JOIN))
    fx = d(HEARD)
    assert fx[:2] == wake_start(2)[:2] and CancelTimer(FAILED_ALERT_TIMER) in fx
    assert d.state is DeviceState.CONNECTING


def test_muted_the_wake_word_is_not_heard() -> None:
    d = Device("wake_word")
    d(MuteRequested(True))
    assert d(HEARD) == [] and d.state is DeviceState.MUTED
    d(MuteRequested(False), StartRequested())
    d.agent_listening()
    d(AgentStateChanged("speaking"), MuteRequested(True))
    assert d(HEARD) == []  # no barge-in either


@pytest.mark.parametrize("mode", ["push_to_talk", "toggle", "always_on"])
def test_the_wake_word_means_nothing_in_a_mode_without_one(mode: str) -> None:
    d = Device(mode)
    assert d(HEARD) == [] and d.state is DeviceState.IDLE


def test_wake_word_button_press_starts_without_the_wake_word_and_stops_the_agent_while_it_speaks() -> None:
    d = Device("wake_word")
    assert d(Pressed()) == [StartSession(1, trigger=Trigger.BUTTON), PlayEarcon("listening")]
    assert d(Pressed()) == []  # joining
    d.agent_listening()
    assert d(Pressed()) == [] and d(Released()) == []
    d(AgentStateChanged("speaking"))
    assert d(Pressed()) == [Interrupt(), PlayEarcon("listening")]
    assert d(LongPressed()) == [EndSession("button"), PlayEarcon("stopped")]
    assert d.state is DeviceState.IDLE
    assert d(DoublePressed()) == [SetMuted(True)]


def test_a_conversation_that_ends_by_itself_says_so_and_an_explicit_end_says_stopped() -> None:
    for reason in ("follow-up-over", "user-away"):
        d = Device("wake_word")
        d(HEARD)
        d.agent_listening()
        assert d(SessionEnded(reason, heard_user=True)) == [PlayEarcon("conversation_end"),
                                                             ArmTimer(CUE_TIMER, CUE_S[Cue.OVER])]
        assert d.state is DeviceState.IDLE and d.snap.cue is Cue.OVER
        d(TimerFired(CUE_TIMER))
        assert d.snap.cue is None
    d = Device("wake_word")
    d(HEARD)
    d.agent_listening()
    assert d(SessionEnded("agent-ended")) == [PlayEarcon("stopped")]
    d = Device("toggle")  # no follow-up window: the same reason is an ordinary end
    d(Pressed())
    d.agent_listening()
    assert d(SessionEnded("follow-up-over")) == [PlayEarcon("stopped")]


# ---- extra buttons -----------------------------------------------------------------------------------------


def test_mute_button_toggles_mute_in_every_mode_and_volume_buttons_step_by_a_tenth() -> None:
    for mode in MODES:
        d = Device(mode)
        assert d(Pressed("mute")) == [SetMuted(True)]
        assert d(Released("mute"), LongPressed("mute")) == []
        assert d(Pressed("volume_up")) == [ChangeVolume(0.1)]
        assert d(Pressed("volume_down")) == [ChangeVolume(-0.1)]
        assert d(Pressed("no-such-button")) == []


# ---- the state the user sees -------------------------------------------------------------------------------


def test_states_follow_the_official_order_connecting_buffering_then_agent_state() -> None:
    d = Device("toggle")
    seen = [d.state]
    for ev in (Pressed(), SessionConnecting(), SessionBuffering(), AgentStateChanged("initializing"),
               AgentStateChanged("listening"), AgentStateChanged("thinking"), AgentStateChanged("speaking"),
               AgentStateChanged("idle")):
        d(ev)
        seen.append(d.state)
    assert seen == ["idle", "connecting", "connecting", "pre-connect-buffering", "initializing", "listening",
                    "thinking", "speaking", "initializing"]


def test_an_unknown_agent_state_changes_nothing() -> None:
    d = Device("toggle")
    d(Pressed())
    d.agent_listening()
    assert d(AgentStateChanged("dancing")) == [] and d.state is DeviceState.LISTENING


def test_reconnecting_shows_and_returns_to_the_agent_state_it_learned_meanwhile() -> None:
    d = Device("toggle")
    d(Pressed())
    d.agent_listening()
    d(SessionReconnecting())
    assert d.state is DeviceState.RECONNECTING
    d(AgentStateChanged("thinking"))
    assert d.state is DeviceState.RECONNECTING
    d(SessionReconnected())
    assert d.state is DeviceState.THINKING


# ---- failures ----------------------------------------------------------------------------------------------


def test_failure_is_shown_with_its_reason_the_error_earcon_and_an_alert_that_dims() -> None:
    d = Device("push_to_talk")
    d(Pressed())
    fx = d(SessionFailed(FailureReason.AGENT_DID_NOT_JOIN, "no agent after 20 s"))
    assert fx == [PlayEarcon("error"), ArmTimer(FAILED_ALERT_TIMER, FAILED_ALERT_S)]
    assert d.state is DeviceState.FAILED and d.snap.reason is FailureReason.AGENT_DID_NOT_JOIN
    assert d.snap.detail == "no agent after 20 s" and d.snap.alerting and not d.snap.turn_open
    assert d(TimerFired(FAILED_ALERT_TIMER), after=FAILED_ALERT_S) == []
    assert d.state is DeviceState.FAILED and not d.snap.alerting
    assert d(SessionEnded("gave-up")) == [] and d.state is DeviceState.FAILED  # stays on show


def test_a_press_in_failed_retries() -> None:
    d = Device("push_to_talk")
    d(Pressed(), SessionFailed(FailureReason.UNREACHABLE))
    d(Released())
    fx = d(Pressed())
    assert fx == [StartSession(2), StartTurn(2), PlayEarcon("listening"), CancelTimer(FAILED_ALERT_TIMER)]
    assert d.state is DeviceState.CONNECTING and not d.snap.alerting


def test_failure_with_retry_stays_failed_until_the_supervisor_reconnects() -> None:
    d = Device("always_on")
    d(StartRequested())
    d.agent_listening()
    d(SessionFailed(FailureReason.CONNECTION_LOST, retry_in_s=2.0))
    assert d.state is DeviceState.FAILED
    assert d(SessionConnecting(), after=2.0) == [CancelTimer(FAILED_ALERT_TIMER)]
    assert d.state is DeviceState.CONNECTING


def test_a_second_failure_report_restarts_the_alert() -> None:
    d = Device("toggle")
    d(Pressed(), SessionFailed(FailureReason.UNREACHABLE, retry_in_s=1.0))
    d(TimerFired(FAILED_ALERT_TIMER), after=FAILED_ALERT_S)
    fx = d(SessionFailed(FailureReason.AUTH))
    assert fx == [CancelTimer(FAILED_ALERT_TIMER), PlayEarcon("error"), ArmTimer(FAILED_ALERT_TIMER, FAILED_ALERT_S)]
    assert d.snap.alerting and d.snap.reason is FailureReason.AUTH


def test_ending_a_failed_session_returns_to_idle() -> None:
    d = Device("toggle")
    d(Pressed(), SessionFailed(FailureReason.UNREACHABLE, retry_in_s=5.0))
    fx = d(EndRequested("operator"))
    assert fx == [EndSession("operator"), PlayEarcon("stopped"), CancelTimer(FAILED_ALERT_TIMER)]
    assert d.state is DeviceState.IDLE


def test_mic_lost_shows_failed_mic_unavailable_while_it_lasts() -> None:
    d = Device("always_on")
    d(StartRequested())
    d.agent_listening()
    d(Pressed())  # muted: a failure outranks mute on the display
    d(MicLost("device vanished"))
    assert d.state is DeviceState.FAILED and d.snap.reason is FailureReason.MIC_UNAVAILABLE
    assert d.snap.detail == "device vanished"
    d(MicRestored())
    assert d.state is DeviceState.MUTED
    d(Pressed())
    assert d.state is DeviceState.LISTENING


def test_stale_supervisor_reports_in_idle_are_ignored_except_a_new_attempt() -> None:
    d = Device("toggle")
    for ev in (SessionBuffering(), AgentStateChanged("listening"), SessionReconnecting(), SessionReconnected(),
               SessionFailed(FailureReason.INTERNAL), SessionEnded()):
        assert d(ev) == [] and d.state is DeviceState.IDLE
    d(SessionConnecting())
    assert d.state is DeviceState.CONNECTING


def test_an_old_timer_is_harmless() -> None:
    d = Device("toggle")
    assert d(TimerFired("something-else"), TimerFired(FAILED_ALERT_TIMER)) == []
    assert d.state is DeviceState.IDLE


# ---- session numbers: a report about an earlier session is stale ----------------------------------------------


def test_each_session_asked_for_gets_the_next_number() -> None:
    d = Device("toggle")
    assert d(Pressed())[0] == StartSession(1)
    d(SessionConnecting(session=1), SessionEnded("idle-timeout", session=1))
    assert d(Pressed())[0] == StartSession(2)


def test_a_late_end_of_the_previous_session_does_not_end_the_next_one() -> None:
    # `ctl end` then a press at once: the supervisor's confirmation of the first end arrives after the press
    d = Device("toggle")
    d(Pressed(), SessionConnecting(session=1), SessionBuffering(session=1))
    d(EndRequested("control"))
    assert d(Pressed())[0] == StartSession(2)
    assert d(SessionEnded("requested", session=1)) == []
    assert d.state is DeviceState.CONNECTING
    d(SessionBuffering(session=2), AgentStateChanged("listening", session=2))
    assert d.state is DeviceState.LISTENING
    d(SessionFailed(FailureReason.AGENT_LEFT, session=1))  # stale: ignored too
    assert d.state is DeviceState.LISTENING


def test_a_retry_of_a_session_ended_right_after_its_failure_does_not_bring_it_back() -> None:
    # `ctl end` while the failed session's retry is already under way: its report comes after the end
    d = Device("push_to_talk")
    d(StartRequested(), SessionConnecting(session=1), SessionFailed(FailureReason.UNREACHABLE, session=1))
    assert d.state is DeviceState.FAILED
    d(EndRequested("control"))
    assert d.state is DeviceState.IDLE
    assert d(SessionConnecting(session=1)) == []
    assert d.state is DeviceState.IDLE
    d(SessionFailed(FailureReason.UNREACHABLE, session=1))
    assert d.state is DeviceState.IDLE
    d(SessionConnecting())  # an unnumbered report (a test driving the machine by hand) still moves it
    assert d.state is DeviceState.CONNECTING


def test_the_client_flags_follow_the_link_not_the_display() -> None:
    d = Device("toggle")
    assert client_flags(d.snap) == ClientFlags(is_finished=True)
    d(Pressed())
    assert client_flags(d.snap) == ClientFlags(is_pending=True, is_finished=False)
    d(SessionBuffering())
    assert client_flags(d.snap) == ClientFlags(can_listen=True, is_finished=False)
    d(AgentStateChanged("initializing"))
    assert client_flags(d.snap) == ClientFlags(is_pending=True, is_finished=False)
    d(AgentStateChanged("listening"))
    assert client_flags(d.snap) == ClientFlags(can_listen=True, is_connected=True, is_finished=False)
    d(MuteRequested(True))  # muted: still connected, but the mic reaches nobody
    assert client_flags(d.snap) == ClientFlags(is_connected=True, is_finished=False)
    d(SessionFailed(FailureReason.AUTH))
    assert client_flags(d.snap) == ClientFlags(is_finished=True)
