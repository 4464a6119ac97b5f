"""The vocabulary every layer speaks (layer 0): the states a user sees, why a session failed, the events that
drive the device state machine and the effects it asks for. It imports nothing from `device`, so `audio`,
`controls`, `session` and `daemon` all import it downward.

Events come from the button (gestures), the control socket (commands), the session supervisor (network and
agent) and timers; all are plain frozen dataclasses so the transition function stays pure and testable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class DeviceState(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    PRECONNECT_BUFFERING = "pre-connect-buffering"  # capturing; the agent is not there yet
    INITIALIZING = "initializing"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    MUTED = "muted"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


class FailureReason(StrEnum):
    """Why a session failed; `message` is the sentence a user reads (status, log, `voice-device status`)."""

    UNREACHABLE = "unreachable"
    TOKEN_ENDPOINT = "token-endpoint"
    AUTH = "auth"
    SERVER_SHUTDOWN = "server-shutdown"
    PARTICIPANT_REMOVED = "participant-removed"
    DUPLICATE_IDENTITY = "duplicate-identity"
    CONNECTION_LOST = "connection-lost"
    AGENT_DID_NOT_JOIN = "agent-did-not-join"
    AGENT_NOT_INITIALIZED = "agent-not-initialized"
    AGENT_LEFT = "agent-left"
    MIC_UNAVAILABLE = "mic-unavailable"
    SPEAKER_UNAVAILABLE = "speaker-unavailable"
    INTERNAL = "internal"

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    FailureReason.UNREACHABLE: "The LiveKit server or token endpoint could not be reached; check the network and URLs.",
    FailureReason.TOKEN_ENDPOINT: "The token endpoint answered with an error; check livekit.endpoint and its logs.",
    FailureReason.AUTH: "The server refused the token (401/403); check the API key/secret or the token server.",
    FailureReason.SERVER_SHUTDOWN: "The LiveKit server shut down.",
    FailureReason.PARTICIPANT_REMOVED: "This device was removed from the room.",
    FailureReason.DUPLICATE_IDENTITY: "Another participant joined with this device's identity.",
    FailureReason.CONNECTION_LOST: "The connection to the LiveKit server was lost and could not be resumed.",
    # The three agent reasons are the official SDKs' sentences, word for word.
    FailureReason.AGENT_DID_NOT_JOIN: "Agent did not join the room.",
    FailureReason.AGENT_NOT_INITIALIZED: "Agent joined the room but did not complete initializing.",
    FailureReason.AGENT_LEFT: "Agent left the room unexpectedly.",
    FailureReason.MIC_UNAVAILABLE: "The microphone is unavailable; check audio.input_device (`voice-device devices`).",
    FailureReason.SPEAKER_UNAVAILABLE: "The speaker is unavailable; check audio.output_device.",
    FailureReason.INTERNAL: "An internal error ended the session; see the log.",
}


class Trigger(StrEnum):
    """What asked for a session (the status counts conversations by it)."""

    BUTTON = "button"
    WAKE_WORD = "wake_word"
    COMMAND = "command"  # `voice-device ctl start`, and always_on's start at boot


class AgentState(StrEnum):
    """`lk.agent.state`, what the agent says it is doing (livekit-agents' `AgentState`). `idle` is declared by the
    protocol but not set by AgentSession; components-js counts it as pending, like initializing."""

    INITIALIZING = "initializing"
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"

    @classmethod
    def of(cls, value: str) -> AgentState | None:
        """The state an attribute names, or None for a value the protocol does not declare."""
        try:
            return cls(value)
        except ValueError:
            return None

    @property
    def ready(self) -> bool:
        """The agent has finished initializing (components-js `isConnected`)."""
        return self in (AgentState.LISTENING, AgentState.THINKING, AgentState.SPEAKING)


class EndReason(StrEnum):
    """Why a session ended by its own account (`SessionEnded.reason`); an end the device asked for carries the
    device's reason instead (`EndSession.reason`: "control", "button", ...)."""

    REQUESTED = "requested"
    IDLE_TIMEOUT = "idle-timeout"
    MAX_LENGTH = "max-length"
    AGENT_ENDED = "agent-ended"  # the agent's device.end_session, or its leaving the room on purpose
    ROOM_CLOSED = "room-closed"
    SHUTDOWN = "shutdown"
    # Why a wake-word conversation ended by itself (the follow-up window closed with nobody speaking, or the agent
    # reported the user away): the device says "conversation over" instead of "stopped".
    FOLLOW_UP_OVER = "follow-up-over"
    USER_AWAY = "user-away"


CONVERSATION_OVER = frozenset({EndReason.FOLLOW_UP_OVER, EndReason.USER_AWAY})


# ---- events: inputs of the device state machine -------------------------------------------------------------


class Event:
    """Base of every event (for type hints and `match`)."""


# Button gestures, already debounced and recognised (see controls.gestures). `button` names which one.
@dataclass(frozen=True)
class Pressed(Event):
    button: str = "main"


@dataclass(frozen=True)
class Released(Event):
    button: str = "main"


@dataclass(frozen=True)
class LongPressed(Event):
    button: str = "main"


@dataclass(frozen=True)
class DoublePressed(Event):
    button: str = "main"


# Commands from the control socket or the agent's RPCs.
@dataclass(frozen=True)
class StartRequested(Event):
    pass


@dataclass(frozen=True)
class EndRequested(Event):
    reason: str = "requested"


@dataclass(frozen=True)
class MuteRequested(Event):
    muted: bool


# From the wake-word listener (device/audio/wake/listener.py, through the daemon).
@dataclass(frozen=True)
class WakeWordHeard(Event):
    """The wake word, heard on the device (the speaker guard has ruled out the device's own voice)."""

    model: str
    probability: float
    mark: int  # ring index where the conversation's audio starts (the phrase's start or end: send_wake_phrase)
    phrase_end: int  # ring index where the wake phrase ended: the user's speech counts from here


# From the session supervisor.
@dataclass(frozen=True)
class SessionEvent(Event):
    """A report about one session. `session` is the number the device machine gave it when it asked for it
    (`StartSession.session`); a report about an earlier session is stale and the machine drops it. None means
    "the current one" (a test feeding the machine directly)."""

    session: int | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class SessionConnecting(SessionEvent):
    pass


@dataclass(frozen=True)
class SessionBuffering(SessionEvent):
    """Room joined and mic published; audio is being buffered for an agent that is not there yet."""


@dataclass(frozen=True)
class AgentStateChanged(SessionEvent):
    state: AgentState


@dataclass(frozen=True)
class SessionReconnecting(SessionEvent):
    pass


@dataclass(frozen=True)
class SessionReconnected(SessionEvent):
    pass


@dataclass(frozen=True)
class SessionFailed(SessionEvent):
    reason: FailureReason
    detail: str = ""
    retry_in_s: float | None = None  # the supervisor will retry after this delay; None = it gave up


@dataclass(frozen=True)
class SessionEnded(SessionEvent):
    reason: str = ""  # an EndReason, or the reason of the device's EndSession
    heard_user: bool | None = None  # whether the user spoke in it (after the wake phrase; None: not known) — a
    #                                  wake-word conversation in which nobody spoke was most likely a false wake


# From audio.
@dataclass(frozen=True)
class MicLost(Event):
    detail: str = ""


@dataclass(frozen=True)
class MicRestored(Event):
    pass


# Timers: the state machine arms them through an effect and receives them back as this event.
@dataclass(frozen=True)
class TimerFired(Event):
    name: str


# ---- effects: what the state machine asks the shell to do ---------------------------------------------------


@dataclass(frozen=True)
class StartSession:
    session: int = 0  # the number its events will carry
    mark: int | None = None  # ring index where its audio starts; None: `audio.preroll_ms` before the press, stamped
    #                          by the daemon in the tick that handled the press (not when the effect's turn comes)
    trigger: Trigger = Trigger.BUTTON
    listen_from: int | None = None  # ring index from which the user's speech counts (after the wake phrase)


@dataclass(frozen=True)
class EndSession:
    reason: str = "requested"


@dataclass(frozen=True)
class StartTurn:
    """Push-to-talk: the user's turn begins (mark the pre-roll; call the agent's start_turn RPC)."""

    session: int = 0  # the session it belongs to (a turn with no session running starts this one)
    mark: int | None = None  # where such a session's audio starts; None: stamped at the press, as StartSession's


@dataclass(frozen=True)
class EndTurn:
    pass


@dataclass(frozen=True)
class Interrupt:
    """Barge-in without push-to-talk turns (the wake word or a press while the agent speaks): the speaker stops at
    once and the agent's audio is dropped until it stops speaking; the microphone goes on to the agent live."""


@dataclass(frozen=True)
class CancelTurn:
    pass


@dataclass(frozen=True)
class SetMuted:
    muted: bool


@dataclass(frozen=True)
class ChangeVolume:
    delta: float


@dataclass(frozen=True)
class PlayEarcon:
    name: str  # listening | stopped | error | wake | conversation_end


@dataclass(frozen=True)
class ArmTimer:
    name: str
    delay_s: float


@dataclass(frozen=True)
class CancelTimer:
    name: str


# Every effect, by what carries it out: the daemon (`App._execute`, which matches them all: mypy checks that a new
# one has its case) and the machine's own timers (`controls/timers.py`).
ShellEffect = (StartSession | EndSession | StartTurn | EndTurn | Interrupt | CancelTurn | SetMuted | ChangeVolume
               | PlayEarcon)
TimerEffect = ArmTimer | CancelTimer
Effect = ShellEffect | TimerEffect
