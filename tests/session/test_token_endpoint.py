"""The endpoint and sandbox sources against a real aiohttp server on 127.0.0.1: the happy path and every way an
endpoint can fail (each a typed error with the status and a short excerpt, never a token)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from device.core.vocabulary import FailureReason
from device.session.tokens import EndpointSource, SandboxSource, TokenError, TokenRequest
from tests.session.fakes import fake_jwt

TOKEN = fake_jwt(1, 2_000_000_000, sub="device")
REQ = TokenRequest(room_name="r1", participant_identity="dev", agent_name="concierge")


class Server:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.routes: dict[str, Callable[[web.Request], Any]] = {}
        self.url = ""

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        self.seen.append({"path": request.path, "headers": dict(request.headers), "body": body})
        return await self.routes[request.path](request)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", srv.dispatch)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    srv.url = f"http://127.0.0.1:{port}"
    yield srv
    await runner.cleanup()


def ok(status: int = 201) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"server_url": "wss://lk.example", "participant_token": TOKEN}, status=status)

    return handler


async def test_a_good_answer_gives_credentials_and_the_request_is_the_standard_json(server):
    server.routes["/token"] = ok(201)
    src = EndpointSource(server.url + "/token", headers={"Authorization": "Device abc"}, timeout_s=2)
    creds = await src.fetch(REQ)
    assert creds.server_url == "wss://lk.example" and creds.participant_token == TOKEN
    seen = server.seen[0]
    assert json.loads(seen["body"]) == {"room_name": "r1", "participant_identity": "dev",
                                         "room_config": {"agents": [{"agent_name": "concierge"}]}}
    assert seen["headers"]["Authorization"] == "Device abc"
    assert seen["headers"]["Content-Type"] == "application/json"


async def test_any_2xx_is_accepted(server):
    server.routes["/token"] = ok(200)
    assert (await EndpointSource(server.url + "/token").fetch(REQ)).participant_token == TOKEN


async def test_the_sandbox_source_sends_its_id_header(server):
    server.routes["/sandbox"] = ok()
    await SandboxSource("sbx-123", url=server.url + "/sandbox").fetch(REQ)
    assert server.seen[0]["headers"]["X-Sandbox-ID"] == "sbx-123"


async def _error(server: Server, handler: Callable[[web.Request], Any], timeout_s: float = 2.0) -> TokenError:
    server.routes["/token"] = handler
    with pytest.raises(TokenError) as e:
        await EndpointSource(server.url + "/token", timeout_s=timeout_s).fetch(REQ)
    assert TOKEN not in str(e.value) and TOKEN not in e.value.excerpt
    return e.value


async def test_a_500_is_a_token_endpoint_error_with_status_and_excerpt(server):
    async def h(request):
        return web.Response(status=500, text="database is down\n" + "x" * 500)

    err = await _error(server, h)
    assert err.reason is FailureReason.TOKEN_ENDPOINT and err.status == 500
    assert err.excerpt.startswith("database is down") and len(err.excerpt) <= 160


async def test_a_401_is_an_auth_error(server):
    async def h(request):
        return web.Response(status=401, text="bad device credential")

    err = await _error(server, h)
    assert err.reason is FailureReason.AUTH and err.status == 401
    assert str(err) == "The token endpoint refused this device (HTTP 401); check livekit.endpoint_headers."


async def test_a_refusal_with_a_json_error_says_it_with_any_token_in_it_masked(server):
    async def h(request):
        return web.json_response({"error": f"this device's credential was revoked; enrol it again {TOKEN}"},
                                 status=401)

    err = await _error(server, h)
    assert err.reason is FailureReason.AUTH
    assert str(err).startswith("The token endpoint refused this device (HTTP 401: this device's credential was "
                               "revoked; enrol it again <token>")
    assert TOKEN not in str(err)


async def test_a_slow_endpoint_times_out_as_unreachable(server):
    async def h(request):
        await asyncio.sleep(5)
        return web.Response(text="late")

    err = await _error(server, h, timeout_s=0.5)
    assert err.reason is FailureReason.UNREACHABLE and "0.5 s" in str(err)


async def test_an_answer_that_is_not_json_is_a_token_endpoint_error(server):
    async def h(request):
        return web.Response(status=200, text="<html>login</html>")

    err = await _error(server, h)
    assert err.reason is FailureReason.TOKEN_ENDPOINT and "not JSON" in str(err)


async def test_missing_fields_are_named_without_leaking_the_token(server):
    async def h(request):
        return web.json_response({"participant_token": TOKEN})

    err = await _error(server, h)
    assert err.reason is FailureReason.TOKEN_ENDPOINT and "server_url" in str(err)
    assert "participant_token" in err.excerpt  # the keys, not the values


async def test_a_token_in_an_error_body_is_redacted_from_the_excerpt(server):
    async def h(request):
        return web.Response(status=502, text=f"upstream said token={TOKEN}")

    err = await _error(server, h)
    assert "<token>" in err.excerpt


async def test_a_redirect_to_plain_http_elsewhere_is_refused_before_following_it(server):
    async def h(request):
        raise web.HTTPTemporaryRedirect("http://tokens.example.com/token")

    err = await _error(server, h)
    assert err.reason is FailureReason.TOKEN_ENDPOINT and "redirect" in str(err)
    assert len(server.seen) == 1


async def test_a_redirect_to_an_allowed_url_is_followed_with_the_same_request(server):
    async def h(request):
        raise web.HTTPPermanentRedirect("/v2/token")

    server.routes["/token"] = h
    server.routes["/v2/token"] = ok()
    creds = await EndpointSource(server.url + "/token").fetch(REQ)
    assert creds.participant_token == TOKEN
    assert [s["path"] for s in server.seen] == ["/token", "/v2/token"]
    assert server.seen[0]["body"] == server.seen[1]["body"]


async def test_nothing_listening_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TokenError) as e:
        await EndpointSource(f"http://127.0.0.1:{port}/token", timeout_s=2).fetch(REQ)
    assert e.value.reason is FailureReason.UNREACHABLE
