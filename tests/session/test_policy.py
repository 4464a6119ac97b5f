"""The pure session policy: inputs in, actions out — read as the state table's specification."""

from __future__ import annotations

import random

import pytest

from device.config.schema import BackoffConfig, SessionConfig
from device.core.backoff import Backoff
from device.core.vocabulary import (
    AgentState,
    AgentStateChanged,
    FailureReason,
    SessionBuffering,
    SessionConnecting,
    SessionEnded,
    SessionFailed,
    SessionReconnected,
    SessionReconnecting,
)
from device.session import policy as policy_module
from device.session.agent_session import (
    AgentProtocol,
    AgentStateNews,
    ErrorNews,
    ItemNews,
    OtherNews,
    Role,
    SessionStateNews,
    UserStateNews,
)
from device.session.classify import classify_connect_error, classify_disconnect
from device.session.policy import (
    AGENT_LEFT_GRACE_S,
    FIRST_ANSWER_S,
    INPUT_TYPES,
    TABLE,
    AgentAttributesChanged,
    AgentLeft,
    AgentSeen,
    AgentSpoke,
    AgentStateReported,
    Arm,
    Begin,
    Cancel,
    CloseSession,
    Connect,
    ConnectFailed,
    ConnectSucceeded,
    Disconnected,
    DropBuffer,
    Emit,
    FlushTurns,
    FollowAgent,
    Input,
    Interrupt,
    OpenSession,
    Phase,
    Policy,
    PressAnswered,
    PressMade,
    QueueTurn,
    RoomReconnected,
    RoomReconnecting,
    Start,
    Stop,
    StopPlayback,
    Teardown,
    TimerDue,
    TimerName,
    TurnAsked,
    TurnBegan,
    TurnFinished,
    TurnKind,
    TurnOpened,
    UserAway,
    UserSpeech,
)


def policy(**cfg) -> Policy:
    return Policy(SessionConfig(**cfg), rng=random.Random(1))


def emitted(actions) -> list:
    return [a.event for a in actions if isinstance(a, Emit)]


def connected(p: Policy, state: AgentState | None = AgentState.LISTENING) -> Policy:
    p.handle(Start())
    p.handle(ConnectSucceeded())
    p.handle(AgentSeen("agent-1"))
    if state:
        p.handle(AgentStateReported(state))
    return p


# ---- the table is total ------------------------------------------------------------------------------------

# One input of each kind (every agent state, every timer), to drive each cell of the table once.
SAMPLES: list[Input] = [
    Start(), Stop(), Stop("control"), ConnectSucceeded(), ConnectFailed(FailureReason.UNREACHABLE),
    ConnectFailed(FailureReason.AUTH), AgentSeen("agent-1"), *(AgentStateReported(s) for s in AgentState),
    AgentLeft("agent-1"), AgentLeft("agent-1", deliberate=True), Disconnected("ROOM_DELETED"),
    Disconnected("SIGNAL_CLOSE"),
    RoomReconnecting(), RoomReconnected(), *(TimerDue(t) for t in TimerName), UserSpeech(), UserAway("agent-1"),
    TurnBegan(), TurnFinished(), Begin(7, session=2), Begin(7, listen_from=9),
    AgentSeen("agent-1", active=True, state=AgentState.LISTENING), AgentSeen("agent-2"),
    AgentAttributesChanged(AgentSeen("agent-1", state=AgentState.SPEAKING), state_changed=True),
    *(TurnAsked(k, turn_calls=c) for k in TurnKind for c in (False, True)), TurnOpened(), Interrupt(),
    *(AgentSpoke("agent-1", AgentStateNews(s)) for s in AgentState), AgentSpoke("agent-1", UserStateNews(away=True)),
    AgentSpoke("agent-1", SessionStateNews(AgentState.LISTENING, away=True)),
    AgentSpoke("agent-1", ItemNews(Role.USER, "hello")), AgentSpoke("agent-1", ErrorNews("stt failed")),
    AgentSpoke("agent-1", OtherNews("session_usage_updated")),
    AgentSpoke("agent-2", AgentStateNews(AgentState.SPEAKING)),
    AgentStateReported(AgentState.SPEAKING, via=AgentProtocol.SESSION), UserAway("agent-1", via=AgentProtocol.SESSION),
]

# How a policy reaches each phase.
REACH: dict[Phase, list[Input]] = {
    Phase.IDLE: [],
    Phase.CONNECTING: [Start()],
    Phase.CONNECTED: [Start(), ConnectSucceeded()],
    Phase.RECONNECTING: [Start(), ConnectSucceeded(), RoomReconnecting()],
    Phase.WAITING: [Start(), ConnectFailed(FailureReason.UNREACHABLE)],
}


def test_every_input_type_is_handled_or_ignored_in_every_phase():
    declared = {c for c in vars(policy_module).values() if isinstance(c, type) and issubclass(c, Input)} - {Input}
    assert set(INPUT_TYPES) == declared
    for phase in Phase:
        for kind in declared:
            assert callable(TABLE[(phase, kind)]), (phase, kind)
    assert len(TABLE) == len(Phase) * len(declared)


@pytest.mark.parametrize("mode", ["push_to_talk", "toggle", "wake_word", "always_on"])
@pytest.mark.parametrize("phase", list(Phase))
def test_every_input_in_every_phase_gives_actions_and_a_phase(mode, phase):
    assert {type(x) for x in SAMPLES} == set(INPUT_TYPES)
    for sample in SAMPLES:
        p = policy(mode=mode, idle_timeout_s=30, max_session_s=60)
        for step in REACH[phase]:
            p.handle(step)
        assert p.phase is phase
        actions = p.handle(sample)
        assert all(isinstance(a, policy_module.Action) for a in actions), (phase, sample)
        assert p.phase in Phase


def test_an_unknown_input_is_refused():
    with pytest.raises(TypeError, match="not an input of the session policy"):
        policy().handle(object())  # type: ignore[arg-type]


# ---- the transitions ---------------------------------------------------------------------------------------


def test_start_connects_with_a_fresh_token_in_a_new_room_and_arms_the_max_length():
    actions = policy(max_session_s=60).handle(Start())
    assert actions == [Emit(SessionConnecting()), Connect(fresh_token=True, new_room=True), Arm("max", 60)]


def test_connected_arms_the_agent_timer_whoever_dispatched_the_agent():
    # the device's agent_name or the token server: either way an agent must come, and a failure must show
    p = policy(agent_connect_timeout_s=20)
    p.handle(Start())
    assert p.handle(ConnectSucceeded()) == [Emit(SessionBuffering()), Arm("agent", 20), Arm("preconnect", 20)]
    q = policy(preconnect=False)
    q.handle(Start())
    assert q.handle(ConnectSucceeded()) == [Emit(SessionBuffering()), Arm("agent", 20)]


@pytest.mark.parametrize("mode", ["push_to_talk", "always_on"])
def test_an_agent_that_never_comes_fails_the_session_whoever_dispatched_it(mode):
    p = policy(mode=mode, agent_connect_timeout_s=20)
    p.handle(Start())
    armed = [a for a in p.handle(ConnectSucceeded()) if isinstance(a, Arm)]
    events = [e for a in sorted(armed, key=lambda a: a.delay_s) for e in emitted(p.handle(TimerDue(a.name)))]
    (failed,) = [e for e in events if isinstance(e, SessionFailed)]
    assert failed.reason is FailureReason.AGENT_DID_NOT_JOIN and failed.detail == "after 20 s"
    assert failed.reason.message == "Agent did not join the room."
    assert (failed.retry_in_s is not None) == (mode == "always_on")


def test_a_reconnect_rearms_the_agent_timer_whoever_dispatched_the_agent():
    p = connected(policy(agent_connect_timeout_s=20), state=AgentState.INITIALIZING)
    p.handle(RoomReconnecting())
    assert Arm("agent", 20) in p.handle(RoomReconnected())


def test_a_ready_agent_cancels_the_agent_timer():
    p = policy()
    p.handle(Start())
    p.handle(ConnectSucceeded())
    assert Cancel("agent") not in p.handle(AgentStateReported(AgentState.INITIALIZING))
    assert Cancel("agent") in p.handle(AgentStateReported(AgentState.LISTENING))


def test_the_same_agent_state_twice_is_reported_once():
    p = connected(policy())
    assert p.handle(AgentStateReported(AgentState.LISTENING)) == []
    assert emitted(p.handle(AgentStateReported(AgentState.THINKING))) == [AgentStateChanged("thinking")]


def test_the_agent_timer_picks_the_sdk_reason():
    p = policy()
    p.handle(Start())
    p.handle(ConnectSucceeded())
    assert emitted(p.handle(TimerDue("agent")))[0].reason is FailureReason.AGENT_DID_NOT_JOIN
    q = connected(policy(), state=AgentState.INITIALIZING)
    assert emitted(q.handle(TimerDue("agent")))[0].reason is FailureReason.AGENT_NOT_INITIALIZED


def test_an_agent_leaving_is_a_failure_only_after_the_grace_unless_a_reconnect_explains_it():
    p = connected(policy())
    assert Arm("agent-gone", AGENT_LEFT_GRACE_S) in p.handle(AgentLeft("agent-1"))
    actions = p.handle(RoomReconnecting())  # a full restart reports participants gone first
    assert Cancel("agent-gone") in actions and emitted(actions) == [SessionReconnecting()]
    assert p.handle(TimerDue("agent-gone")) == []
    p.handle(AgentSeen("agent-1"))
    assert emitted(p.handle(RoomReconnected())) == [SessionReconnected()]
    q = connected(policy())
    q.handle(AgentLeft("agent-1"))
    assert emitted(q.handle(TimerDue("agent-gone")))[0].reason is FailureReason.AGENT_LEFT


def test_a_reconnect_that_takes_too_long_is_given_up_for_a_fresh_token_and_room_keeping_the_words():
    """A fleet's node died under the device: the SDK would try it for ~20 s; after reconnect_timeout_s the session
    fails (connection-lost) and the retry asks the token endpoint again, which names a live node."""
    p = connected(policy(reconnect_timeout_s=8))
    assert Arm("reconnect", 8) in p.handle(RoomReconnecting())
    actions = p.handle(TimerDue("reconnect"))
    (failed,) = emitted(actions)
    assert failed.reason is FailureReason.CONNECTION_LOST and failed.retry_in_s is not None
    assert "no reconnect within 8 s" in failed.detail
    assert any(isinstance(a, Teardown) and a.keep_buffering for a in actions)
    (connect,) = [a for a in p.handle(TimerDue("retry")) if isinstance(a, Connect)]
    assert connect.fresh_token and connect.new_room


def test_a_reconnect_in_time_cancels_the_give_up_and_zero_leaves_it_to_the_sdk():
    p = connected(policy(reconnect_timeout_s=8))
    p.handle(RoomReconnecting())
    assert Cancel("reconnect") in p.handle(RoomReconnected())
    assert p.handle(TimerDue("reconnect")) == []  # a stale timer
    q = connected(policy(reconnect_timeout_s=0))
    assert not [a for a in q.handle(RoomReconnecting()) if isinstance(a, Arm)]


@pytest.mark.parametrize("held", [False, True])
def test_a_turn_the_agent_died_with_is_given_again_to_the_agent_that_replaces_it(held):
    """Push-to-talk: the user's turn went to agent-1, whose node died before it answered; after the SDK's restart
    agent-2 joins (a new job). It gets the turn again — opened, so the words re-sent to it count, and closed if the
    button is already up — else the device would show `listening` for ever with the user's words unanswered."""
    p = connected(policy(mode="push_to_talk"))
    p.handle(TurnAsked(TurnKind.START, turn_calls=True))
    if not held:
        p.handle(TurnAsked(TurnKind.END, turn_calls=True))
    p.handle(AgentLeft("agent-1"))
    p.handle(RoomReconnecting())
    taken = p.handle(AgentSeen("agent-2"))
    queued = [a.kind for a in taken if isinstance(a, QueueTurn)]
    assert queued == ([TurnKind.START] if held else [TurnKind.START, TurnKind.END])
    p.handle(RoomReconnected())
    assert FlushTurns("agent-2") in p.handle(AgentStateReported(AgentState.LISTENING))


def test_a_turn_already_answered_or_never_sent_is_not_given_again():
    p = connected(policy(mode="push_to_talk"))
    p.handle(TurnAsked(TurnKind.START, turn_calls=True))
    p.handle(TurnAsked(TurnKind.END, turn_calls=True))
    p.handle(AgentStateReported(AgentState.THINKING))  # answered
    p.handle(AgentLeft("agent-1"))
    assert not [a for a in p.handle(AgentSeen("agent-2")) if isinstance(a, QueueTurn)]
    q = policy(mode="push_to_talk")  # a press before any agent: the queued call waits for the first one
    q.handle(Start())
    q.handle(TurnAsked(TurnKind.START, turn_calls=True))
    q.handle(ConnectSucceeded())
    assert not [a for a in q.handle(AgentSeen("agent-1")) if isinstance(a, QueueTurn)]


def test_after_a_rejoin_without_the_agent_it_must_come_back_in_time():
    p = connected(policy(agent_connect_timeout_s=15))
    p.handle(RoomReconnecting())
    p.handle(AgentLeft("agent-1"))
    assert Arm("agent-gone", 15) in p.handle(RoomReconnected())
    assert emitted(p.handle(TimerDue("agent-gone")))[0].reason is FailureReason.AGENT_LEFT


def test_auth_is_retried_once_with_a_fresh_token_in_the_same_room_then_final():
    p = policy()
    p.handle(Start())
    assert p.handle(ConnectFailed(FailureReason.AUTH)) == [Connect(fresh_token=True, new_room=False)]
    failed = emitted(p.handle(ConnectFailed(FailureReason.AUTH)))[0]
    assert failed == SessionFailed(FailureReason.AUTH, "", None) and p.phase is Phase.IDLE


def test_a_network_failure_waits_a_full_jitter_delay_then_reconnects_in_the_same_room():
    p = policy(backoff=BackoffConfig(base_s=1.0, cap_s=30.0, attempts=5))
    p.handle(Start())
    actions = p.handle(ConnectFailed(FailureReason.UNREACHABLE, "refused"))
    delay = random.Random(1).uniform(0, 1.0)
    assert Arm("retry", pytest.approx(delay)) in actions and Teardown("failed: unreachable") in actions
    assert emitted(actions)[0].retry_in_s == pytest.approx(delay) and p.phase is Phase.WAITING
    assert p.handle(TimerDue("retry")) == [Emit(SessionConnecting()), Connect(fresh_token=False, new_room=False)]


def test_a_lost_connection_retries_in_a_new_room_with_a_fresh_token():
    p = connected(policy())
    p.handle(Disconnected("SIGNAL_CLOSE"))
    assert p.handle(TimerDue("retry"))[-1] == Connect(fresh_token=True, new_room=True)


def test_final_failures_are_not_retried_except_by_always_on():
    for mode, retried in (("push_to_talk", False), ("always_on", True)):
        p = connected(policy(mode=mode))
        failed = emitted(p.handle(Disconnected("DUPLICATE_IDENTITY")))[0]
        assert (failed.retry_in_s is not None) is retried


@pytest.mark.parametrize("mode", ["always_on", "push_to_talk", "toggle"])
@pytest.mark.parametrize("end", [Disconnected("ROOM_DELETED"), Stop("control"), Stop("agent-ended"),
                                 Stop("requested")])
def test_an_explicit_end_ends_the_session_for_real_in_every_mode(mode, end):
    # the agent closing the room, `ctl end`, the agent's device.end_session: no reconnect, even for always_on
    p = connected(policy(mode=mode))
    actions = p.handle(end)
    assert p.phase is Phase.IDLE and not [a for a in actions if isinstance(a, Arm)]
    assert [type(e) for e in emitted(actions)] == [SessionEnded]


def test_always_on_retries_a_failure_for_ever_but_not_an_end():
    p = connected(policy(mode="always_on"))
    assert emitted(p.handle(Disconnected("SERVER_SHUTDOWN")))[0].retry_in_s is not None
    assert p.phase is Phase.WAITING


def test_idle_is_armed_only_while_the_agent_listens_and_no_turn_is_held():
    p = connected(policy(mode="push_to_talk", idle_timeout_s=30), state=None)
    assert Arm("idle", 30) in p.handle(AgentStateReported(AgentState.LISTENING))
    assert p.handle(UserSpeech()) == [Arm("idle", 30)]
    assert p.handle(TurnBegan()) == [Cancel("idle")]
    assert p.handle(UserSpeech()) == []
    assert p.handle(TurnFinished()) == [Arm("idle", 30)]
    assert Cancel("idle") in p.handle(AgentStateReported(AgentState.THINKING))
    p.handle(AgentStateReported(AgentState.LISTENING))
    assert emitted(p.handle(TimerDue("idle"))) == [SessionEnded("idle-timeout", heard_user=True)]


@pytest.mark.parametrize(("mode", "idle"), [("always_on", 30.0), ("push_to_talk", 0.0)])
def test_no_idle_timer_for_always_on_or_when_disabled(mode, idle):
    p = connected(policy(mode=mode, idle_timeout_s=idle), state=None)
    assert not any(isinstance(a, Arm) and a.name == "idle" for a in p.handle(AgentStateReported(AgentState.LISTENING)))


def test_the_preconnect_timer_drops_the_buffer_only_if_no_agent_came():
    p = policy(agent_connect_timeout_s=20)
    p.handle(Start())
    p.handle(ConnectSucceeded())
    assert p.handle(TimerDue("preconnect")) == [DropBuffer("no agent joined within 20 s")]


def test_stop_in_any_phase_tears_down_and_ends_and_stale_inputs_are_ignored():
    p = policy()
    p.handle(Start())
    actions = p.handle(Stop())
    assert actions[0] == Teardown("requested") and emitted(actions) == [SessionEnded("requested", heard_user=False)]
    assert p.handle(ConnectSucceeded()) == [] and p.handle(Stop()) == [] and p.handle(TimerDue("agent")) == []


def test_a_double_start_is_ignored():
    p = policy()
    p.handle(Start())
    assert p.handle(Start()) == []


# ---- backoff and classification -----------------------------------------------------------------------------------


def test_full_jitter_backoff_grows_to_the_cap_and_stops_after_the_attempts():
    rng = random.Random(3)
    expect = random.Random(3)
    b = Backoff(1.0, 5.0, attempts=5, rng=rng)
    ceilings = [1.0, 2.0, 4.0, 5.0]
    for ceiling in ceilings:
        d = b.next_delay()
        assert d == pytest.approx(expect.uniform(0, ceiling)) and 0 <= d <= ceiling
    assert b.next_delay() is None
    b.reset()
    assert b.next_delay() is not None


def test_backoff_with_zero_attempts_never_gives_up_and_stays_finite():
    b = Backoff(1.0, 30.0, attempts=0, rng=random.Random(0))
    delays = [b.next_delay() for _ in range(2000)]
    assert all(d is not None and 0 <= d <= 30.0 for d in delays)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("failed to connect: 401 Unauthorized", FailureReason.AUTH),
        ("ws: HTTP error 403 Forbidden", FailureReason.AUTH),
        ("connection refused (os error 111)", FailureReason.UNREACHABLE),
        ("dns error: failed to lookup address", FailureReason.UNREACHABLE),
        ("engine: timeout", FailureReason.UNREACHABLE),
    ],
)
def test_connect_errors_are_classified(message, reason):
    assert classify_connect_error(message) is reason


def test_disconnect_reasons_are_classified():
    assert classify_disconnect("ROOM_DELETED") == ("room-closed", None)
    assert classify_disconnect("SERVER_SHUTDOWN") == (None, FailureReason.SERVER_SHUTDOWN)
    assert classify_disconnect("SOMETHING_NEW") == (None, FailureReason.CONNECTION_LOST)


# ---- wake_word: the follow-up window and the agent's "user away" ---------------------------------------------------


def wake_policy(follow_up_s: float = 2.0, **cfg) -> Policy:
    return Policy(SessionConfig(mode="wake_word", **cfg), rng=random.Random(1),
                  follow_up_s=follow_up_s)


def test_the_follow_up_window_restarts_each_time_the_agent_finishes_speaking_and_ends_the_conversation():
    p = connected(wake_policy(follow_up_s=2.0, idle_timeout_s=30), state=None)
    # before the first answer the agent is still taking the command from the pre-connect buffer
    assert Arm("idle", FIRST_ANSWER_S) in p.handle(AgentStateReported(AgentState.LISTENING))
    assert Cancel("idle") in p.handle(AgentStateReported(AgentState.THINKING))
    p.handle(AgentStateReported(AgentState.SPEAKING))
    assert Arm("idle", 2.0) in p.handle(AgentStateReported(AgentState.LISTENING))
    p.handle(AgentStateReported(AgentState.SPEAKING))
    # the clock starts again after each answer
    assert Arm("idle", 2.0) in p.handle(AgentStateReported(AgentState.LISTENING))
    actions = p.handle(TimerDue("idle"))
    assert emitted(actions) == [SessionEnded("follow-up-over", heard_user=False)]
    assert Teardown("follow-up-over") in actions and p.phase is Phase.IDLE


def test_the_user_speaking_in_the_follow_up_window_keeps_the_conversation_and_is_remembered():
    p = connected(wake_policy(follow_up_s=3.0), state=AgentState.SPEAKING)
    assert Arm("idle", 3.0) in p.handle(AgentStateReported(AgentState.LISTENING))
    assert p.handle(UserSpeech()) == [Arm("idle", 3.0)]
    assert emitted(p.handle(Stop("control"))) == [SessionEnded("control", heard_user=True)]


def test_a_follow_up_window_of_zero_ends_the_conversation_right_after_the_answer():
    p = connected(wake_policy(follow_up_s=0.0), state=AgentState.SPEAKING)
    assert Arm("idle", 0.0) in p.handle(AgentStateReported(AgentState.LISTENING))


def test_the_agent_marking_the_user_away_ends_the_conversation_once_it_has_stopped_speaking():
    p = connected(wake_policy(), state=AgentState.LISTENING)
    assert emitted(p.handle(UserAway("agent-1"))) == [SessionEnded("user-away", heard_user=False)]
    q = connected(wake_policy(), state=AgentState.SPEAKING)
    assert q.handle(UserAway("agent-1")) == []  # its goodbye is still playing
    assert emitted(q.handle(AgentStateReported(AgentState.LISTENING))) == [AgentStateChanged("listening"),
                                                         SessionEnded("user-away", heard_user=False)]


@pytest.mark.parametrize("mode", ["push_to_talk", "toggle", "always_on"])
def test_user_away_means_nothing_without_a_follow_up_window(mode):
    p = connected(policy(mode=mode), state=AgentState.LISTENING)
    assert p.handle(UserAway("agent-1")) == [] and p.phase is Phase.CONNECTED


def test_the_idle_timer_of_other_modes_is_unchanged_by_the_follow_up_window():
    p = connected(Policy(SessionConfig(mode="toggle", idle_timeout_s=30), follow_up_s=2.0),
                  state=None)
    assert Arm("idle", 30) in p.handle(AgentStateReported(AgentState.LISTENING))
    assert emitted(p.handle(TimerDue("idle"))) == [SessionEnded("idle-timeout", heard_user=False)]


def test_speech_while_the_agent_speaks_is_not_taken_for_the_user_having_spoken():
    p = connected(wake_policy(), state=AgentState.SPEAKING)
    p.handle(UserSpeech())  # perhaps its own voice, echoed past the canceller
    p.handle(AgentStateReported(AgentState.LISTENING))
    assert emitted(p.handle(TimerDue("idle")))[-1] == SessionEnded("follow-up-over", heard_user=False)


# ---- the session's agent, presses, turns and barge-in ----------------------------------------------------------------


def test_the_first_agent_seen_is_the_sessions_and_only_it_is_followed_or_heard():
    p = connected(policy(mode="wake_word"))
    assert p.handle(AgentSeen("agent-2", active=True, state=AgentState.SPEAKING)) == []
    assert p.handle(AgentLeft("agent-2")) == [] and p.agent == "agent-1"
    assert p.handle(UserAway("agent-2")) == [] and p.phase is Phase.CONNECTED
    assert FollowAgent("agent-1") in p.handle(AgentSeen("agent-1", active=True))
    assert FollowAgent(None) in p.handle(AgentLeft("agent-1"))


def test_a_start_while_one_runs_is_ignored_but_takes_its_number():
    p = policy()
    assert p.handle(Begin(100, session=1))[:2] == [OpenSession(100, 100), PressMade()]
    assert p.handle(Begin(200, session=2, listen_from=250)) == [] and p.session == 2


def test_each_press_is_answered_once_when_the_agent_first_listens_for_it():
    p = policy(mode="push_to_talk")
    p.handle(Begin(0))
    p.handle(ConnectSucceeded())
    assert PressAnswered() in p.handle(AgentSeen("agent-1", state=AgentState.LISTENING))
    assert PressAnswered() not in p.handle(AgentStateReported(AgentState.THINKING))
    assert PressAnswered() not in p.handle(AgentStateReported(AgentState.LISTENING))  # no press waits
    asked = p.handle(TurnAsked(TurnKind.START, turn_calls=True))
    assert PressMade() in asked and PressAnswered() not in asked  # its start_turn opens the turn
    assert p.handle(TurnOpened()) == [PressAnswered()]


def test_turn_calls_go_only_to_a_ready_agent_and_a_press_while_it_speaks_stops_its_audio():
    p = policy(mode="push_to_talk")
    p.handle(Begin(0))
    p.handle(ConnectSucceeded())
    p.handle(AgentSeen("agent-1", state=AgentState.INITIALIZING))
    asked = p.handle(TurnAsked(TurnKind.START, turn_calls=True))
    assert QueueTurn(TurnKind.START) in asked and not any(isinstance(a, FlushTurns) for a in asked)
    assert FlushTurns("agent-1") in p.handle(AgentStateReported(AgentState.SPEAKING))
    assert StopPlayback() in p.handle(TurnAsked(TurnKind.START, turn_calls=True))


def test_an_interruption_drops_the_agents_audio_until_it_stops_speaking():
    p = connected(policy(), state=AgentState.LISTENING)
    p.handle(Interrupt())
    assert not p.barging  # nothing to interrupt
    p.handle(AgentStateReported(AgentState.SPEAKING))
    p.handle(Interrupt())
    assert p.barging
    p.handle(AgentStateReported(AgentState.LISTENING))
    assert not p.barging


def test_a_session_over_closes_and_a_failure_to_be_retried_keeps_buffering():
    p = connected(policy())
    retried = p.handle(Disconnected("SIGNAL_CLOSE"))
    assert next(a for a in retried if isinstance(a, Teardown)).keep_buffering and CloseSession() not in retried
    p.handle(TimerDue("retry"))
    ended = p.handle(Stop())
    assert not next(a for a in ended if isinstance(a, Teardown)).keep_buffering and ended[-1] == CloseSession()
