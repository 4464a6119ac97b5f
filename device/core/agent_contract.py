"""The voice-device agent protocol: every name that crosses between the device and its LiveKit agent, declared once.

PROTOCOL.md (repo root) is the document; this module is the device's copy of its names, and the companion for
livekit-agents (`agent/voice_device_agent/contract.py`) keeps its own (it must not import the device).
`tests/test_protocol_doc.py` checks that the three agree.

Versioning: `PROTOCOL_VERSION` is MAJOR.MINOR. A minor version only adds (an attribute, a method, a payload
field); the device refuses nothing from an agent that speaks an older minor version, or none at all.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

PROTOCOL_VERSION = "1.0"


class DeviceAttribute(StrEnum):
    """Participant attributes the device publishes (they ride the token request: static for a session)."""

    PROTOCOL = "voice_device.protocol"  # the protocol version the device speaks, e.g. "1.0"
    MODE = "voice_device.mode"  # a `DeviceMode`
    VERSION = "voice_device.version"  # the device's software version


class AgentAttribute(StrEnum):
    """Participant attributes the device reads from its agent (besides livekit-agents' own `lk.agent.*`)."""

    PROTOCOL = "voice_device.agent_protocol"  # the protocol version the agent speaks; absent: none


class DeviceMode(StrEnum):
    """`session.mode`, as the agent sees it (device/core/modes.py has one entry per value)."""

    PUSH_TO_TALK = "push_to_talk"
    WAKE_WORD = "wake_word"
    ALWAYS_ON = "always_on"
    TOGGLE = "toggle"


class DeviceMethod(StrEnum):
    """RPC methods the device registers; only the session's agent may call them."""

    SET_VOLUME = "device.set_volume"
    END_SESSION = "device.end_session"
    GET_STATUS = "device.get_status"


class AgentMethod(StrEnum):
    """RPC methods the device calls on a push-to-talk agent (their names can be changed in `session.turns`)."""

    START_TURN = "start_turn"
    END_TURN = "end_turn"
    CANCEL_TURN = "cancel_turn"


class RpcErrorCode(IntEnum):
    """The device's own RPC error codes (1001-1999 are the SDK's)."""

    INVALID_ARGUMENT = 2001
    PERMISSION_DENIED = 2002


class Topic(StrEnum):
    """Byte and text stream topics between the device and the agent."""

    PRECONNECT_AUDIO = "lk.agent.pre-connect-audio-buffer"  # device → agent: audio captured before the agent came
    CHAT = "lk.chat"  # device → agent: typed text (`voice-device say`)
    TRANSCRIPTION = "lk.transcription"  # agent → device: transcripts
    AGENT_EVENTS = "lk.agent.events"  # agent → device: session events (JSON)
    AGENT_SESSION = "lk.agent.session"  # agent ↔ device: livekit-agents' session protocol (protobuf)


def device_attributes(mode: str, version: str) -> dict[str, str]:
    """The attributes a device in `mode` running software `version` publishes."""
    return {DeviceAttribute.PROTOCOL.value: PROTOCOL_VERSION, DeviceAttribute.MODE.value: mode,
            DeviceAttribute.VERSION.value: version}


def compatible(version: str | None) -> bool:
    """Whether an agent speaking `version` is one this device understands fully: the same major version (an older
    or newer minor only adds or lacks extras). None (no version) is not compatible, but is still served."""
    if not version:
        return False
    return version.split(".")[0] == PROTOCOL_VERSION.split(".")[0]
