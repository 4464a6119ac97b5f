"""The device's own token client (device/session/tokens.py `EndpointSource`) against the token server: a token with
the Bearer credential over http://127.0.0.1, and a revoked device failing with reason `auth` and a sentence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from device.core.vocabulary import FailureReason
from device.session.tokens import EndpointSource, TokenError, TokenRequest
from tests.tokenserver.harness import Node, Served, enrol, serving, tokens, write_config

REQUEST = TokenRequest(room_name="voice-device-0001", participant_identity="device-whatever", agent_name="other")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[Served, Path]]:
    node = await Node().start()
    store = tmp_path / "devices.sqlite"
    async with serving(write_config(tmp_path, store, [node.url])) as served:
        yield served, store
    await node.stop()


def source(served: Served, credential: str) -> EndpointSource:
    return EndpointSource(served.url + "/voice-device", headers={"Authorization": f"Bearer {credential}"},
                          timeout_s=5)


async def test_the_devices_endpoint_source_gets_its_token_with_its_bearer_credential(server) -> None:
    served, store = server
    creds = await source(served, enrol(store, "kiosk-1")).fetch(REQUEST)
    claims = creds.claims() or {}
    assert creds.server_url.startswith("ws://127.0.0.1:") and claims["sub"] == "kiosk-1"
    assert claims["roomConfig"] == {"agents": [{"agentName": "kiosk-agent"}]}


async def test_a_revoked_device_fails_with_reason_auth_and_a_sentence(server) -> None:
    served, store = server
    credential = enrol(store, "kiosk-1")
    assert tokens("revoke", "--store", str(store), "--device", "kiosk-1").returncode == 0
    with pytest.raises(TokenError) as e:
        await source(served, credential).fetch(REQUEST)
    assert e.value.reason is FailureReason.AUTH and e.value.status == 401
    assert str(e.value).startswith("The token endpoint refused this device (HTTP 401: this device's credential was "
                                   "revoked; enrol the device again")
    assert credential not in str(e.value) + e.value.excerpt
