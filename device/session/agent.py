"""Recognising the agent among the room's participants, the way LiveKit's Swift and components-js SDKs do.

The agent is kind AGENT (compared by enum NAME: the FFI numbering differs from the protocol's), and not an
avatar worker (which is also kind AGENT but carries `lk.publish_on_behalf`). Its state is the attribute
`lk.agent.state` (`AgentState`, declared in `core/vocabulary.py`), or, from an agent with livekit-agents' session
host, its `lk.agent.session` events (`agent_session.py`). When the device dispatches an agent by name,
the session's agent is the one carrying that name in `lk.agent.name` (livekit-agents sets it when its worker
accepts the job, and matches on it in its own `wait_for_agent`): another agent in the room is neither played,
followed nor obeyed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from device.core.agent_contract import AgentAttribute, compatible
from device.core.dynamic import ProtobufEnum

if TYPE_CHECKING:
    from livekit import rtc

AGENT_STATE_ATTR = "lk.agent.state"
AGENT_NAME_ATTR = "lk.agent.name"
PUBLISH_ON_BEHALF_ATTR = "lk.publish_on_behalf"


def _enum_name(enum: ProtobufEnum, value: int | None) -> str:
    if value is None:
        return ""
    try:
        return str(enum.Name(value))
    except (ValueError, TypeError):
        return ""


def is_agent(participant: rtc.Participant) -> bool:
    from livekit import rtc

    if _enum_name(rtc.ParticipantKind, participant.kind) != "PARTICIPANT_KIND_AGENT":
        return False
    return not participant.attributes.get(PUBLISH_ON_BEHALF_ATTR)


def agent_protocol(participant: rtc.Participant) -> str | None:
    """The voice-device protocol version the agent says it speaks (PROTOCOL.md); None when it says none."""
    return participant.attributes.get(AgentAttribute.PROTOCOL.value) or None


def protocol_sentence(identity: str, version: str | None) -> str:
    """The log line saying which protocol the session's agent speaks."""
    if version is None:
        return (f"agent speaks no voice-device protocol identity={identity} (no {AgentAttribute.PROTOCOL.value} "
                "attribute): served as any LiveKit agent; PROTOCOL.md says what an agent must do for this mode")
    if not compatible(version):
        return (f"agent speaks voice-device protocol identity={identity} version={version}, another major "
                "version than this device's: served as an agent that speaks none")
    return f"agent speaks voice-device protocol identity={identity} version={version}"


def is_session_agent(participant: rtc.Participant, agent_name: str | None) -> bool:
    """The agent a session takes for its own: an agent and, when the device dispatches `agent_name`, that one."""
    if not is_agent(participant):
        return False
    return agent_name is None or participant.attributes.get(AGENT_NAME_ATTR) == agent_name


def is_active(participant: rtc.Participant) -> bool:
    from livekit import rtc

    return _enum_name(rtc.ParticipantState, participant.state) == "PARTICIPANT_STATE_ACTIVE"


def speaks_for(participant: rtc.Participant, agent_identity: str | None) -> bool:
    """True for the agent itself and for an avatar publishing on its behalf (its audio is the agent's voice)."""
    if agent_identity is None:
        return False
    if participant.identity == agent_identity:
        return True
    return bool(participant.attributes.get(PUBLISH_ON_BEHALF_ATTR) == agent_identity)


def disconnect_reason_name(value: int | None) -> str:
    from livekit import rtc

    return _enum_name(rtc.DisconnectReason, value) or "UNKNOWN_REASON"
