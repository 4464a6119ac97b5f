"""Token requests, sources and the cache rule (reuse while nbf <= now and exp - 60 s > now, same request)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from device import __version__
from device.config.schema import LiveKitConfig
from device.core.agent_contract import PROTOCOL_VERSION
from device.core.vocabulary import FailureReason
from device.session.tokens import (
    Credentials,
    LiteralSource,
    LocalSource,
    TokenCache,
    TokenError,
    TokenRequest,
    build_request,
    check_url,
    device_identity,
    jwt_claims,
    make_token_source,
)
from tests.session.fakes import fake_jwt

NOW = 1_000_000.0


def request(room: str = "r1") -> TokenRequest:
    return TokenRequest(room_name=room, participant_identity="dev")


class Source:
    def __init__(self, *tokens: str):
        self.tokens = list(tokens)
        self.calls = 0

    async def fetch(self, req: TokenRequest) -> Credentials:
        self.calls += 1
        return Credentials("wss://x", self.tokens.pop(0))


# ---- the request ------------------------------------------------------------------------------------------------


def test_request_body_uses_the_standard_endpoint_fields_and_dispatches_the_agent_in_room_config():
    cfg = LiveKitConfig(room="kitchen", identity="dev-1", name="Kitchen", metadata="m", attributes={"b": "2", "a": "1"},
                        agent_name="concierge", agent_metadata='{"lang":"fr"}')
    assert build_request(cfg).body() == {
        "room_name": "kitchen",
        "participant_identity": "dev-1",
        "participant_name": "Kitchen",
        "participant_metadata": "m",
        "participant_attributes": {"a": "1", "b": "2"},
        "room_config": {"agents": [{"agent_name": "concierge", "metadata": '{"lang":"fr"}'}]},
    }


def test_the_session_s_mode_adds_the_agent_protocol_s_attributes_which_the_config_cannot_override():
    cfg = LiveKitConfig(identity="dev-1", attributes={"room": "kitchen", "voice_device.mode": "fake"})
    attributes = build_request(cfg, mode="wake_word").body()["participant_attributes"]
    assert attributes == {"room": "kitchen", "voice_device.protocol": PROTOCOL_VERSION,
                          "voice_device.mode": "wake_word", "voice_device.version": __version__}


def test_without_a_fixed_room_every_session_gets_a_fresh_room_with_the_prefix():
    cfg = LiveKitConfig(room_prefix="kiosk-", identity="d")
    rooms = {build_request(cfg).room_name for _ in range(20)}
    assert len(rooms) == 20 and all(r.startswith("kiosk-") for r in rooms)
    assert "room_config" not in build_request(cfg).body()  # no agent_name: nothing dispatched


def test_default_identity_is_a_stable_hash_of_the_machine_id(tmp_path: Path):
    mid = tmp_path / "machine-id"
    mid.write_text("0123456789abcdef0123456789abcdef\n")
    first, again = device_identity((mid,)), device_identity((mid,))
    assert first == again and first.startswith("device-") and "0123456789abcdef" not in first
    assert device_identity((tmp_path / "absent",), hostname=lambda: "pi kitchen") == "device-pi-kitchen"


# ---- the cache ----------------------------------------------------------------------------------------------------


async def test_a_valid_token_for_the_same_request_is_reused():
    src = Source(fake_jwt(NOW - 10, NOW + 600))
    cache = TokenCache(src, wall=lambda: NOW)
    a = await cache.get(request())
    b = await cache.get(request())
    assert a is b and src.calls == 1


async def test_a_changed_request_fetches_again():
    src = Source(fake_jwt(NOW - 10, NOW + 600), fake_jwt(NOW - 10, NOW + 600))
    cache = TokenCache(src, wall=lambda: NOW)
    await cache.get(request("r1"))
    await cache.get(request("r2"))
    assert src.calls == 2


@pytest.mark.parametrize(("nbf", "exp"), [(NOW - 10, NOW + 60), (NOW - 10, NOW + 30), (NOW + 5, NOW + 600)])
async def test_a_token_expiring_within_a_minute_or_not_yet_valid_is_not_reused(nbf, exp):
    src = Source(fake_jwt(nbf, exp), fake_jwt(NOW - 10, NOW + 600))
    cache = TokenCache(src, wall=lambda: NOW)
    await cache.get(request())
    await cache.get(request())
    assert src.calls == 2


async def test_a_token_valid_for_61_more_seconds_is_reused():
    src = Source(fake_jwt(NOW, NOW + 61))
    cache = TokenCache(src, wall=lambda: NOW)
    await cache.get(request())
    await cache.get(request())
    assert src.calls == 1


async def test_fresh_and_invalidate_bypass_the_cache():
    src = Source(*[fake_jwt(NOW - 10, NOW + 600)] * 3)
    cache = TokenCache(src, wall=lambda: NOW)
    await cache.get(request())
    await cache.get(request(), fresh=True)
    cache.invalidate()
    await cache.get(request())
    assert src.calls == 3


async def test_a_token_that_is_not_a_jwt_is_never_cached():
    src = Source("opaque", "opaque")
    cache = TokenCache(src, wall=lambda: NOW)
    await cache.get(request())
    await cache.get(request())
    assert src.calls == 2 and jwt_claims("opaque") is None


# ---- sources ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://tokens.example.com/t", "ftp://x/t", "tokens.example.com"])
def test_plain_http_is_refused_except_to_localhost(url):
    with pytest.raises(TokenError, match="not HTTPS") as e:
        check_url(url)
    assert e.value.reason is FailureReason.TOKEN_ENDPOINT


@pytest.mark.parametrize("url", ["https://tokens.example.com/t", "http://localhost:8080/t", "http://127.0.0.1/t"])
def test_https_and_local_http_are_accepted(url):
    check_url(url)


async def test_an_expired_literal_token_is_reported_before_connecting():
    src = LiteralSource("wss://x", fake_jwt(NOW - 100, NOW - 1), wall=lambda: NOW)
    with pytest.raises(TokenError, match="expired") as e:
        await src.fetch(request())
    assert e.value.reason is FailureReason.AUTH
    ok = LiteralSource("wss://x", fake_jwt(NOW - 100, NOW + 100), wall=lambda: NOW)
    assert (await ok.fetch(request())).server_url == "wss://x"


async def test_local_source_mints_for_the_requested_room_and_agent_and_warns_once(caplog):
    LocalSource._warned = False
    src = LocalSource("ws://localhost:7880", "devkey", "a-development-secret-of-32-chars!", ttl_s=120)
    req = TokenRequest(room_name="r9", participant_identity="dev", agent_name="concierge")
    with caplog.at_level(logging.WARNING, logger="device.session.tokens"):
        creds = await src.fetch(req)
        await src.fetch(req)
    claims = creds.claims()
    assert claims["sub"] == "dev" and claims["video"]["room"] == "r9" and claims["video"]["roomJoin"]
    assert claims["roomConfig"]["agents"][0]["agentName"] == "concierge"
    assert claims["exp"] - claims["nbf"] == 120
    assert sum("secret lives on this device" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    ("source", "missing"),
    [("endpoint", "livekit.endpoint"), ("sandbox", "livekit.sandbox_id"), ("literal", "livekit.url"),
     ("local", "livekit.url")],
)
def test_a_source_without_its_settings_names_the_missing_key(source, missing):
    with pytest.raises(TokenError, match=missing):
        make_token_source(LiveKitConfig(token_source=source))


def test_credentials_never_show_the_token_in_repr():
    token = fake_jwt(NOW, NOW + 10)
    assert token not in repr(Credentials("wss://x", token))

