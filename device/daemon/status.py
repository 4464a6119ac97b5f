"""The daemon's status, declared once: the frozen `DeviceStatus` (state, reason, session, agent, transcripts, audio
counters, mute, volume, the client flags, the conversations) and its renderings.

Where it goes is `device/daemon/outlets/`: systemd's STATUS=, control-socket clients, the status file, and any
publisher added there. `status_json` is its rendering for JSON peers (socket, file), and the client rebuilds it with
`device.core.codec.from_json`. Transcripts (what people said) live in memory and go to the control socket's clients
only: the status file, on disk and world-readable, is written `without_transcripts`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from device.audio.stats import AudioStats
from device.controls.machine import ClientFlags
from device.core.codec import to_json
from device.core.dynamic import JSON
from device.core.log import redactor
from device.session.status import SessionStatus

_AUDIO_METRICS = ("overruns", "underruns", "input_overflows", "lost_samples", "frames_captured", "samples_played",
                  "input_reopens", "output_reopens")


@dataclass(frozen=True)
class Latency:
    """Recent latencies of one kind (the last `count`, at most 32), in ms, and how many were measured in all: `total`
    moves by one with each measurement, so a reader that follows the status sees each (`last_ms`) once, even two
    equal ones in a row (the Prometheus outlet's histograms)."""

    count: int = 0
    p50_ms: int | None = None
    p90_ms: int | None = None
    max_ms: int | None = None
    last_ms: int | None = None
    total: int = 0  # measured since the daemon started


@dataclass(frozen=True)
class ConversationStatus:
    """Conversations since the daemon started (device/daemon/conversations.py)."""

    started: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))  # by Trigger
    # by why they ended: an EndReason, the device's own end ("button", "control"), or "failed" (given up on)
    ended: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    resumed: int = 0  # connections that dropped during a conversation and came back (SessionReconnected)
    wake_without_speech: int = 0  # wake-word conversations that ended with nobody speaking: likely false wakes
    wake_to_listening: Latency = Latency()  # wake word detected → the agent listening
    press_to_listening: Latency = Latency()  # a press that started a conversation → the agent listening


@dataclass(frozen=True)
class WakeStatus:
    """The wake word on the device (device/daemon/wake.py), in a mode that listens for one."""

    listening: bool = False  # the listener runs (it does not while muted)
    models: tuple[str, ...] = ()
    detections: int = 0  # wake words heard and acted on
    ignored_own_voice: int = 0  # heard on the mic within a moment of the speaker saying it: dropped
    heard_on_speaker: int = 0  # the speaker guard's own detections on what the speaker played
    error: str | None = None  # why there is no listener (a model that no longer loads)
    down: str | None = None  # why the listener is not hearing, while it waits to start again after a failure
    failures: int = 0  # the listener failed (the detector raised) and was started again


@dataclass(frozen=True)
class DeviceStatus:
    """Everything a client is told about the device, in one value."""

    state: str = "idle"
    reason: str | None = None  # a FailureReason value, or why a reload failed
    version: str = ""  # the daemon's software version (`device.__version__`)
    message: str = ""  # the sentence for `reason`
    detail: str = ""
    since: float = 0.0  # unix time of the last change of state or reason
    muted: bool = False
    volume: float | None = None
    mic_open: bool = False
    flags: ClientFlags = ClientFlags()
    session: SessionStatus = SessionStatus()
    audio: AudioStats | None = None
    wake: WakeStatus | None = None
    conversations: ConversationStatus = ConversationStatus()
    reloads: int = 0
    reload_error: str | None = None

    def metrics(self) -> dict[str, JSON]:
        """The flat counters monitoring reads (`metrics` in the socket's snapshot and the status file)."""
        s = self.session
        m: dict[str, JSON] = {
            "sessions": s.metrics.sessions,
            "reconnects": s.metrics.reconnects,
            "failures": dict(s.metrics.failures),
            "preconnect_bytes_sent": s.metrics.preconnect_bytes_sent,
            "press_to_listening_ms": s.metrics.press_to_listening_ms,
            "press_to_listening_recent_ms": list(s.metrics.press_to_listening_recent_ms),
        }
        if s.preconnect is not None and s.preconnect.dropped_ms:  # the running session's audio no agent heard
            m["session_audio_dropped_ms"] = s.preconnect.dropped_ms
            m["session_audio_drop_reason"] = s.preconnect.drop_reason
        if self.audio is not None:
            m.update({f"audio_{key}": getattr(self.audio, key) for key in _AUDIO_METRICS})
        if s.process is not None:  # session.process warm / on_demand: one child per session
            m["session_processes_started"] = s.process.started
        m.update(self._conversation_metrics())
        m["mic_open"] = self.mic_open
        m["reloads"] = self.reloads
        if self.reload_error:
            m["reload_error"] = self.reload_error
        return m

    def _conversation_metrics(self) -> dict[str, JSON]:
        c = self.conversations
        m: dict[str, JSON] = {f"conversations_{trigger}": n for trigger, n in sorted(c.started.items())}
        w = self.wake
        if w is None:
            return m
        m.update(wake_listening=w.listening, wake_detections=w.detections, wake_ignored_own_voice=w.ignored_own_voice,
                 wake_conversations_without_speech=c.wake_without_speech, wake_listener_failures=w.failures)
        if w.down:
            m["wake_down"] = w.down
        lat = c.wake_to_listening
        if lat.count:
            m.update(wake_to_listening_ms_p50=lat.p50_ms, wake_to_listening_ms_p90=lat.p90_ms,
                     wake_to_listening_ms_max=lat.max_ms, wake_to_listening_count=lat.count)
        return m


def status_json(status: DeviceStatus) -> dict[str, JSON]:
    """`DeviceStatus` as JSON, with its flat `metrics` beside the structure, secrets redacted as in the log (a
    failure's detail can quote a token endpoint's answer, which may echo the credential)."""
    rendered: dict[str, JSON] = _redacted({**to_json(status), "metrics": status.metrics()}, redactor().redact)
    return rendered


def _redacted(value: JSON, redact: Callable[[str], str]) -> JSON:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, redact) for v in value]
    return value


def without_transcripts(status: DeviceStatus) -> DeviceStatus:
    """`status` as it may be written to disk: what the user and the agent said left out."""
    return replace(status, session=replace(status.session, transcripts=()))


def status_text(state: str, reason: str | None) -> str:
    """What `systemctl status` shows: `listening`, or `failed: auth`."""
    return f"{state}: {reason}" if reason else state


def write_json_file(path: str | os.PathLike[str], payload: Mapping[str, JSON]) -> None:
    """Replace `path` atomically with `payload` as JSON (`replace_file`)."""
    replace_file(path, (json.dumps(payload, default=str) + "\n").encode())


def replace_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` atomically (write a hidden sibling, then rename): a reader never sees half a file. World-readable
    whatever the umask (the unit's is 0027): what reads it — monitoring, node_exporter — runs as another user."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
