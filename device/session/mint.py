"""Minting LiveKit access tokens locally (development only: the API secret belongs on a token server).

Imported lazily: `livekit.api` costs ~0.3 s and ~16 MB, so only the `token` command and the `local` token
source pay for it.
"""

from __future__ import annotations

from datetime import timedelta


def mint_token(
    api_key: str,
    api_secret: str,
    *,
    room: str,
    identity: str,
    name: str | None = None,
    metadata: str | None = None,
    attributes: dict[str, str] | None = None,
    agent_name: str | None = None,
    agent_metadata: str | None = None,
    ttl: timedelta = timedelta(hours=1),
) -> str:
    from livekit import api

    token = (
        api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_ttl(ttl)
        # can_update_own_metadata lets the device publish its own attributes (e.g. mute state).
        .with_grants(api.VideoGrants(room_join=True, room=room, can_update_own_metadata=True))
    )
    if name:
        token = token.with_name(name)
    if metadata:
        token = token.with_metadata(metadata)
    if attributes:
        token = token.with_attributes(dict(attributes))
    if agent_name:
        dispatch = api.RoomAgentDispatch(agent_name=agent_name, metadata=agent_metadata or "")
        token = token.with_room_config(api.RoomConfiguration(agents=[dispatch]))
    return token.to_jwt()
