"""What a session reports about itself: frozen dataclasses, declared once, from the supervisor to every outlet.

`Supervisor.status()` builds a `SessionStatus`; a session process sends it to the daemon as it is (pickled on
the private channel); `RemoteSupervisor` keeps what must outlive a child (metrics summed, the last failure and
transcripts kept) with `SessionStatus.carried_over`; the daemon puts it inside its `DeviceStatus`, which the
control socket, `voice-device status`, systemd's STATUS= and the status file render.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from device.core.vocabulary import FailureReason, SessionFailed
from device.session.agent_session import AgentProtocol


@dataclass(frozen=True)
class AgentStatus:
    identity: str | None = None
    state: str | None = None  # lk.agent.state as the agent last wrote it
    protocol: str | None = None  # the voice-device protocol it speaks (voice_device.agent_protocol); None: none


@dataclass(frozen=True)
class TurnsStatus:
    rpc: bool = False  # push-to-talk turns go through the agent's RPCs
    fallback: bool = False  # the agent has no such RPCs: its own turn detection decides


@dataclass(frozen=True)
class TranscriptLine:
    speaker: str
    text: str


@dataclass(frozen=True)
class UplinkStatus:
    """The running session's microphone route (see `session/uplink/uplink.py`)."""

    route: str
    buffered_ms: int = 0
    bytes_sent: int = 0
    streams: int = 0
    last_stream_closed: str = ""
    dropped_ms: int = 0  # audio no agent heard
    drop_reason: str = ""


@dataclass(frozen=True)
class FailureStatus:
    reason: FailureReason
    detail: str = ""
    retry_in_s: float | None = None

    @property
    def message(self) -> str:
        return self.reason.message

    @classmethod
    def of(cls, event: SessionFailed) -> FailureStatus:
        return cls(event.reason, event.detail, event.retry_in_s)


def _no_failures() -> Mapping[str, int]:
    return MappingProxyType({})


PRESS_LATENCIES_KEPT = 32  # press → listening of the last this many presses (status, benchmarks)


def recent(latencies: tuple[int, ...]) -> tuple[int, ...]:
    return latencies[-PRESS_LATENCIES_KEPT:]


@dataclass(frozen=True)
class SessionMetrics:
    sessions: int = 0
    reconnects: int = 0
    failures: Mapping[str, int] = field(default_factory=_no_failures)  # reason → count
    preconnect_bytes_sent: int = 0
    press_to_listening_ms: int | None = None  # the latest press → agent listening
    # every press's press → agent listening, oldest first, the last PRESS_LATENCIES_KEPT (a distribution)
    press_to_listening_recent_ms: tuple[int, ...] = ()

    def __add__(self, other: SessionMetrics) -> SessionMetrics:
        """Totals over two stretches (two session processes): counts add, the latest latency wins, the recent
        latencies are joined (bounded)."""
        return SessionMetrics(
            sessions=self.sessions + other.sessions,
            reconnects=self.reconnects + other.reconnects,
            failures=MappingProxyType(dict(Counter(self.failures) + Counter(other.failures))),
            preconnect_bytes_sent=self.preconnect_bytes_sent + other.preconnect_bytes_sent,
            press_to_listening_ms=(other.press_to_listening_ms if other.press_to_listening_ms is not None
                                   else self.press_to_listening_ms),
            press_to_listening_recent_ms=recent(self.press_to_listening_recent_ms
                                                + other.press_to_listening_recent_ms),
        )


@dataclass(frozen=True)
class ProcessStatus:
    """`session.process: warm | on_demand`: the current session process, the spare, and how many were started."""

    pid: int | None = None
    started: int = 0
    lost: int = 0  # of those, how many exited while serving the device (crashed, or hung and stopped)
    spare_pid: int | None = None  # the child ready for the next session (`warm`), while it waits


@dataclass(frozen=True)
class SessionStatus:
    phase: str = "idle"  # the policy's phase: idle | connecting | connected | reconnecting | waiting
    room: str | None = None
    identity: str | None = None
    agent: AgentStatus = AgentStatus()
    # what the agent reports itself in: livekit-agents' session host, or only the older signals (None: not yet)
    agent_protocol: AgentProtocol | None = None
    muted: bool = False
    turns: TurnsStatus = TurnsStatus()
    transcripts: tuple[TranscriptLine, ...] = ()
    preconnect: UplinkStatus | None = None
    last_failure: FailureStatus | None = None
    metrics: SessionMetrics = SessionMetrics()
    process: ProcessStatus | None = None

    def carried_over(self, kept: SessionStatus) -> SessionStatus:
        """This (a child's) status with what outlives children from `kept`: metrics added, and the last failure
        and transcripts where this one has none yet."""
        return replace(
            self,
            last_failure=self.last_failure or kept.last_failure,
            transcripts=self.transcripts or kept.transcripts,
            metrics=kept.metrics + self.metrics,
        )
