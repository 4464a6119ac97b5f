"""Tokens for the real server, minted with the test key pair (tests/livekit/server.py)."""

from __future__ import annotations

import warnings
from datetime import timedelta

from device import __version__
from device.core.agent_contract import device_attributes
from tests.livekit.server import API_KEY, API_SECRET


def device_token(room: str, identity: str, *, agent_name: str | None = "vd-agent",
                 ttl: timedelta = timedelta(minutes=10), secret: str = API_SECRET,
                 mode: str | None = "push_to_talk") -> str:
    """A literal token for the device, minted as PROTOCOL.md asks of a token minter: with the device's attributes
    for `mode` (None: without them, as an older minter would)."""
    from livekit import api

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        token = (api.AccessToken(API_KEY, secret).with_identity(identity).with_name(identity).with_ttl(ttl)
                 .with_grants(api.VideoGrants(room_join=True, room=room, can_update_own_metadata=True)))
        if mode is not None:
            token = token.with_attributes(device_attributes(mode, __version__))
        if agent_name:
            token = token.with_room_config(api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name=agent_name)]))
        return token.to_jwt()
