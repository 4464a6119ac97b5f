"""What a device is given (pure but for the signing): the standard token request read, and the token it earns.

The request (LiveKit's standard token endpoint format) may ask for a room name, a display name, metadata and
participant attributes; what it cannot choose is fixed by its credential:
- the identity is the enrolled device id, whatever `participant_identity` says;
- the room is `<device id>.<16 hex of SHA-256 of the requested room name>`: the same requested name gives the
  same room (a session's refetches stay in its room) and a new session's new name a new one, and no name a
  device can send lands it in another device's room (device ids hold no '.', so the prefix is its own);
  without a requested name, a fresh random room;
- the agent dispatched is the device's group's `agent_name`; the request's `room_config` is ignored;
- the grants are room_join for that room only, and can_update_own_metadata (the device may set its own attributes,
  as PROTOCOL.md allows); attributes under LiveKit's reserved `lk.` prefix are refused.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import warnings
from dataclasses import dataclass
from datetime import timedelta

from livekit import api

from voice_device_tokens.config import Group

MAX_TEXT = 256  # a display name or a requested room name
MAX_METADATA = 4096
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_BYTES = 4096  # keys and values together
RESERVED_PREFIX = "lk."


class BadRequest(Exception):
    """The request cannot be served as sent; `str()` says what is wrong with it."""


@dataclass(frozen=True)
class Ask:
    """What a standard token request asks for that the endpoint honours."""

    room_name: str | None = None
    name: str | None = None
    metadata: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Grant:
    identity: str
    room: str
    name: str | None
    metadata: str | None
    attributes: tuple[tuple[str, str], ...]
    agent_name: str | None
    agent_metadata: str | None
    ttl_s: int


def _optional_text(body: dict[str, object], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    if len(value) > limit:
        raise BadRequest(f"{key} is longer than {limit} characters")
    return value


def _attributes(value: object) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadRequest("participant_attributes must be an object of strings")
    if len(value) > MAX_ATTRIBUTES or sum(len(k) + len(v) for k, v in value.items()) > MAX_ATTRIBUTE_BYTES:
        raise BadRequest(f"participant_attributes holds more than {MAX_ATTRIBUTES} attributes or "
                         f"{MAX_ATTRIBUTE_BYTES} characters")
    reserved = sorted(k for k in value if k.startswith(RESERVED_PREFIX))
    if reserved:
        raise BadRequest(f"participant_attributes may not set LiveKit's own {RESERVED_PREFIX}* attributes "
                         f"({', '.join(reserved)})")
    return tuple(sorted(value.items()))


def read_ask(raw: bytes) -> Ask:
    """The standard request's JSON body (all fields optional; an empty body asks for nothing in particular)."""
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return Ask(room_name=_optional_text(body, "room_name", MAX_TEXT),
               name=_optional_text(body, "participant_name", MAX_TEXT),
               metadata=_optional_text(body, "participant_metadata", MAX_METADATA),
               attributes=_attributes(body.get("participant_attributes")))


def room_for(device_id: str, requested: str | None) -> str:
    suffix = secrets.token_hex(8) if requested is None else hashlib.sha256(requested.encode()).hexdigest()[:16]
    return f"{device_id}.{suffix}"


def grant_for(device_id: str, group: Group, ask: Ask) -> Grant:
    return Grant(identity=device_id, room=room_for(device_id, ask.room_name), name=ask.name or device_id,
                 metadata=ask.metadata, attributes=ask.attributes, agent_name=group.agent_name,
                 agent_metadata=group.agent_metadata, ttl_s=group.ttl_s)


def mint(grant: Grant, api_key: str, api_secret: str) -> str:
    token = (api.AccessToken(api_key, api_secret)
             .with_identity(grant.identity)
             .with_name(grant.name or grant.identity)
             .with_ttl(timedelta(seconds=grant.ttl_s))
             .with_grants(api.VideoGrants(room_join=True, room=grant.room, can_update_own_metadata=True)))
    if grant.metadata:
        token = token.with_metadata(grant.metadata)
    if grant.attributes:
        token = token.with_attributes(dict(grant.attributes))
    if grant.agent_name:
        dispatch = api.RoomAgentDispatch(agent_name=grant.agent_name, metadata=grant.agent_metadata or "")
        token = token.with_room_config(api.RoomConfiguration(agents=[dispatch]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about a short secret on every token: `serve` says it once
        return token.to_jwt()
