"""The HTTP face: `POST <path>` (LiveKit's standard token endpoint) and `GET /healthz`, with one access log line a
request (outcome, device, client; never the credential or the token).

The order of checks, each answered as soon as it fails:
1. the client address has failed authentication too often → 429 + Retry-After (its guesses are throttled);
2. the `Authorization: Bearer <credential>` is checked against the store's hash (read on this request) → 401,
   counted against the client address: missing, malformed, unknown, replaced by a newer enrolment, revoked;
3. the device has asked too often → 429 + Retry-After;
4. the body is read (`grant.read_ask`) → 400 with what is wrong;
5. a healthy node is chosen → 503 when none answers its probe;
then 201 `{"server_url", "participant_token"}`. Errors are `{"error": "<sentence>"}`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web

from voice_device_tokens import credential as cred
from voice_device_tokens.config import Config
from voice_device_tokens.grant import BadRequest, grant_for, mint, read_ask
from voice_device_tokens.nodes import NodePool
from voice_device_tokens.ratelimit import Limiter
from voice_device_tokens.store import Device, Store

MAX_BODY = 64 * 1024
access = logging.getLogger("voice_device_tokens.access")
log = logging.getLogger("voice_device_tokens.app")

INVALID = ("this device's credential is not valid (unknown device, a wrong or replaced credential); "
           "enrol the device again and install the new credential")
REVOKED = "this device's credential was revoked; enrol the device again to let it back in"


class Outcome(StrEnum):
    ISSUED = "issued"
    NO_CREDENTIAL = "no-credential"
    BAD_CREDENTIAL = "bad-credential"
    REVOKED = "revoked"
    AUTH_RATE_LIMITED = "auth-rate-limited"
    RATE_LIMITED = "rate-limited"
    BAD_REQUEST = "bad-request"
    UNKNOWN_GROUP = "unknown-group"
    NO_HEALTHY_NODE = "no-healthy-node"
    STORE_UNAVAILABLE = "store-unavailable"


@dataclass
class Endpoint:
    config: Config
    store: Store
    pool: NodePool
    per_device: Limiter
    failed_auth: Limiter
    clock: Callable[[], float] = time.monotonic


class _Answer(Exception):
    """A request answered before a token: status, outcome and the sentence for the device."""

    def __init__(self, status: int, outcome: Outcome, sentence: str, retry_after: int = 0):
        super().__init__(sentence)
        self.status, self.outcome, self.retry_after = status, outcome, retry_after


def client_address(request: web.Request, header: str | None) -> str:
    if header and (value := request.headers.get(header)):
        return value.split(",")[-1].strip()  # the entry the proxy in front of us appended
    return request.remote or "unknown"


def _bearer(request: web.Request) -> cred.Credential | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return cred.parse(value.strip()) if scheme.lower() == "bearer" else None


async def _authenticate(ep: Endpoint, request: web.Request, fields: dict[str, str]) -> Device:
    presented = _bearer(request)
    if presented is None:
        has_header = "Authorization" in request.headers
        raise _Answer(401, Outcome.BAD_CREDENTIAL if has_header else Outcome.NO_CREDENTIAL, INVALID)
    fields["claimed"] = presented.device_id  # a device id, safe to log: the secret part is never logged
    try:
        device = await asyncio.to_thread(ep.store.find, presented.device_id)
    except sqlite3.Error as e:
        log.error("the device store %s cannot be read: %s", ep.store.path, e)
        raise _Answer(503, Outcome.STORE_UNAVAILABLE, "the token server cannot read its device store") from None
    if device is None or not cred.matches(presented, device.hashed):
        raise _Answer(401, Outcome.BAD_CREDENTIAL, INVALID)
    if device.revoked:
        raise _Answer(401, Outcome.REVOKED, REVOKED)
    return device


async def _issue(ep: Endpoint, request: web.Request, fields: dict[str, str]) -> dict[str, str]:
    client = fields["client"]
    if wait := ep.failed_auth.wait_s(client):
        raise _Answer(429, Outcome.AUTH_RATE_LIMITED, "too many failed authentications from this address; "
                      f"retry in {wait} s", wait)
    try:
        device = await _authenticate(ep, request, fields)
    except _Answer as refused:
        if refused.status == 401:
            ep.failed_auth.take(client)
        raise
    fields["device"] = device.device_id
    if wait := ep.per_device.take(device.device_id):
        raise _Answer(429, Outcome.RATE_LIMITED, f"this device asked for tokens too often; retry in {wait} s", wait)
    group = ep.config.groups.get(device.group)
    if group is None:
        log.error("device %s is in group %s, which the configuration does not name", device.device_id, device.group)
        raise _Answer(500, Outcome.UNKNOWN_GROUP, "this device's group is not configured on the token server")
    try:
        ask = read_ask(await request.read())
    except web.HTTPRequestEntityTooLarge:
        raise _Answer(413, Outcome.BAD_REQUEST, f"the request body is larger than {MAX_BODY // 1024} KiB") from None
    except BadRequest as e:
        raise _Answer(400, Outcome.BAD_REQUEST, str(e)) from None
    node = ep.pool.choose()
    if node is None:
        raise _Answer(503, Outcome.NO_HEALTHY_NODE, "no LiveKit node is answering its health check; retry later")
    grant = grant_for(device.device_id, group, ask)
    fields.update(room=grant.room, node=node)
    return {"server_url": node, "participant_token": mint(grant, ep.config.api_key, ep.config.api_secret)}


def _log(fields: dict[str, str]) -> None:
    access.info("access %s", " ".join(f"{k}={v}" for k, v in fields.items()))


def make_app(ep: Endpoint) -> web.Application:
    async def token(request: web.Request) -> web.Response:
        started = ep.clock()
        client = client_address(request, ep.config.limits.client_address_header)
        fields = {"outcome": "", "status": "", "client": client}
        try:
            answer = web.json_response(await _issue(ep, request, fields), status=201)
            fields["outcome"] = Outcome.ISSUED
        except _Answer as refused:
            headers = {"Retry-After": str(refused.retry_after)} if refused.retry_after else {}
            if refused.status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="voice-device-tokens"'
            answer = web.json_response({"error": str(refused)}, status=refused.status, headers=headers)
            fields["outcome"] = refused.outcome
        answer.headers["Cache-Control"] = "no-store"
        fields["status"] = str(answer.status)
        fields["ms"] = f"{(ep.clock() - started) * 1000:.1f}"
        _log(fields)
        return answer

    async def healthz(request: web.Request) -> web.Response:
        readable = await asyncio.to_thread(ep.store.readable)
        body = {"ok": readable, "nodes_healthy": len(ep.pool.healthy()), "nodes": len(ep.pool.nodes)}
        return web.json_response(body, status=200 if readable else 503)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(ep.config.path, token)
    app.router.add_get("/healthz", healthz)
    return app
