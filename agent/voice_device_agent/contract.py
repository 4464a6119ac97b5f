"""The voice-device agent protocol as the agent sees it: the names (PROTOCOL.md, the repository's root) and what
the companion reads from them. Plain Python, no livekit import: the device's test suite checks these names against
PROTOCOL.md and the device's own copy (`device/core/agent_contract.py`) without livekit-agents installed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum

PROTOCOL_VERSION = "1.0"


class DeviceAttribute(StrEnum):
    """Participant attributes a voice-device publishes."""

    PROTOCOL = "voice_device.protocol"
    MODE = "voice_device.mode"
    VERSION = "voice_device.version"


class AgentAttribute(StrEnum):
    """Participant attributes the device reads from its agent."""

    PROTOCOL = "voice_device.agent_protocol"


class DeviceMode(StrEnum):
    PUSH_TO_TALK = "push_to_talk"
    WAKE_WORD = "wake_word"
    ALWAYS_ON = "always_on"
    TOGGLE = "toggle"


class DeviceMethod(StrEnum):
    """RPC methods the device serves (to the session's agent only)."""

    SET_VOLUME = "device.set_volume"
    END_SESSION = "device.end_session"
    GET_STATUS = "device.get_status"


class AgentMethod(StrEnum):
    """RPC methods a push-to-talk device calls on its agent."""

    START_TURN = "start_turn"
    END_TURN = "end_turn"
    CANCEL_TURN = "cancel_turn"


class RpcErrorCode(IntEnum):
    INVALID_ARGUMENT = 2001
    PERMISSION_DENIED = 2002


class Topic(StrEnum):
    PRECONNECT_AUDIO = "lk.agent.pre-connect-audio-buffer"
    CHAT = "lk.chat"
    TRANSCRIPTION = "lk.transcription"
    AGENT_EVENTS = "lk.agent.events"
    AGENT_SESSION = "lk.agent.session"


def major(version: str) -> str:
    return version.split(".")[0]


@dataclass(frozen=True)
class DeviceInfo:
    """What a voice-device says about itself in its participant attributes."""

    identity: str
    protocol: str | None = None  # None: the participant publishes no protocol (an older device, or not one)
    mode: DeviceMode | None = None  # None: not said, or a mode this companion does not know
    version: str | None = None

    @classmethod
    def of(cls, identity: str, attributes: Mapping[str, str]) -> DeviceInfo:
        try:
            mode: DeviceMode | None = DeviceMode(attributes.get(DeviceAttribute.MODE.value, ""))
        except ValueError:
            mode = None
        return cls(identity=identity, protocol=attributes.get(DeviceAttribute.PROTOCOL.value) or None, mode=mode,
                   version=attributes.get(DeviceAttribute.VERSION.value) or None)

    @property
    def speaks_protocol(self) -> bool:
        return self.protocol is not None

    @property
    def compatible(self) -> bool:
        """The same major version as this companion: every name here means what the device means by it."""
        return self.protocol is not None and major(self.protocol) == major(PROTOCOL_VERSION)

    @property
    def push_to_talk(self) -> bool:
        return self.mode is DeviceMode.PUSH_TO_TALK

    def describe(self) -> str:
        if self.protocol is None:
            return f"device {self.identity} publishes no voice-device protocol (mode unknown)"
        return (f"device {self.identity} speaks voice-device protocol {self.protocol}, mode "
                f"{self.mode.value if self.mode else 'unknown'}, software {self.version or 'unknown'}")


def volume_payload(volume: float) -> str:
    """`device.set_volume`'s payload; a volume outside 0..1 is refused here, as the device would (2001)."""
    if isinstance(volume, bool) or not 0.0 <= float(volume) <= 1.0:
        raise ValueError(f"the volume must be a number from 0 to 1, not {volume!r}")
    return json.dumps({"volume": float(volume)})


def parse_volume_reply(reply: str) -> float:
    """The volume the device applied, from `device.set_volume`'s answer `{"volume": <0..1>}`."""
    value = json.loads(reply).get("volume")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"the device's answer has no volume: {reply[:80]!r}")
    return float(value)


STATUS_KEYS = ("phase", "muted", "room", "turns", "agent")  # what the LLM is told (never the transcripts)


def status_summary(reply: str, device: DeviceInfo) -> dict[str, object]:
    """`device.get_status`'s answer cut to what an LLM may read: no transcripts, no metrics."""
    status = json.loads(reply)
    if not isinstance(status, dict):
        raise ValueError("the device's status is not a JSON object")
    summary: dict[str, object] = {k: status[k] for k in STATUS_KEYS if k in status}
    summary["mode"] = device.mode.value if device.mode else None
    summary["device_version"] = device.version
    return summary
