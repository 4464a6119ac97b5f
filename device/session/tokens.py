"""Token sources and their cache: where the device gets its server URL and participant token.

Sources (chosen by `livekit.token_source`): `endpoint` (LiveKit's standard token endpoint: POST JSON, answer
`server_url` + `participant_token`), `sandbox` (the same format at LiveKit Cloud with `X-Sandbox-ID`),
`literal` (url + token from config) and `local` (minted on the device from key/secret: development only).

Every failure is a `TokenError` carrying a `FailureReason`, the HTTP status and a short body excerpt — never a
token. `TokenCache` applies the JS SDK's rule: reuse while `nbf <= now` and `exp - 60 s > now` and the request
is unchanged; the supervisor forces a fresh fetch for every new session and after an auth failure.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin, urlsplit

from device import __version__
from device.config.schema import LiveKitConfig
from device.core.agent_contract import device_attributes
from device.core.dynamic import JSON
from device.core.vocabulary import FailureReason

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("device.session.tokens")

SANDBOX_URL = "https://cloud-api.livekit.io/api/v2/sandbox/connection-details"
EXPIRY_MARGIN_S = 60.0
EXCERPT_CHARS = 160
MAX_REDIRECTS = 3
MAX_ANSWER_BYTES = 64 * 1024  # a token answer is about 1 KB; a broken or hostile server must not fill memory
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
MACHINE_ID_PATHS = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


class TokenError(Exception):
    """A token could not be obtained; `str()` is one sentence a user can act on."""

    def __init__(self, reason: FailureReason, message: str, *, status: int | None = None, excerpt: str = ""):
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.excerpt = excerpt


@dataclass(frozen=True)
class TokenRequest:
    """The standard token endpoint's request fields (all optional on the wire)."""

    room_name: str
    participant_identity: str
    participant_name: str | None = None
    participant_metadata: str | None = None
    participant_attributes: tuple[tuple[str, str], ...] = ()
    agent_name: str | None = None
    agent_metadata: str | None = None

    def body(self) -> dict[str, JSON]:
        body: dict[str, JSON] = {"room_name": self.room_name, "participant_identity": self.participant_identity}
        if self.participant_name:
            body["participant_name"] = self.participant_name
        if self.participant_metadata:
            body["participant_metadata"] = self.participant_metadata
        if self.participant_attributes:
            body["participant_attributes"] = dict(self.participant_attributes)
        if self.agent_name:
            agent = {"agent_name": self.agent_name}
            if self.agent_metadata:
                agent["metadata"] = self.agent_metadata
            body["room_config"] = {"agents": [agent]}
        return body


@dataclass(frozen=True)
class Credentials:
    server_url: str
    participant_token: str = field(repr=False)

    def claims(self) -> dict[str, JSON] | None:
        return jwt_claims(self.participant_token)


class TokenSource(Protocol):
    async def fetch(self, request: TokenRequest) -> Credentials: ...


def jwt_claims(token: str) -> dict[str, JSON] | None:
    """The JWT's payload, decoded WITHOUT verification (only to read nbf/exp); None if it is not a JWT."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def device_identity(
    paths: tuple[Path, ...] = MACHINE_ID_PATHS, hostname: Callable[[], str] = socket.gethostname
) -> str:
    """A hash of the machine id (never the id itself), else the hostname: the identity of last resort, where no
    state directory keeps one made for this device (`device/daemon/identity.py`) — devices cloned from one image
    share their machine id, and so this."""
    for path in paths:
        try:
            machine_id = path.read_text().strip()
        except OSError:
            continue
        if machine_id:
            return "device-" + hashlib.sha256(b"voice-device:" + machine_id.encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_-]", "-", hostname() or "unknown")
    return f"device-{name}"


def build_request(cfg: LiveKitConfig, *, identity: str | None = None, mode: str | None = None) -> TokenRequest:
    """A request for a NEW session: a fresh room (prefix + random) unless `livekit.room` fixes one. With the
    session's `mode`, the participant attributes carry the agent protocol's (PROTOCOL.md): its version, the mode,
    the software version; `livekit.attributes` cannot override those."""
    room = cfg.room or f"{cfg.room_prefix}{secrets.token_hex(4)}"
    attributes = dict(cfg.attributes)
    if mode is not None:
        attributes.update(device_attributes(mode, __version__))
    return TokenRequest(
        room_name=room,
        participant_identity=cfg.identity or identity or device_identity(),
        participant_name=cfg.name,
        participant_metadata=cfg.metadata,
        participant_attributes=tuple(sorted(attributes.items())),
        agent_name=cfg.agent_name,
        agent_metadata=cfg.agent_metadata,
    )


def check_url(url: str, what: str = "token endpoint") -> None:
    """HTTPS is required, except plain HTTP to this machine (development)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and (parts.hostname or "") in _LOCAL_HOSTS:
        return
    raise TokenError(
        FailureReason.TOKEN_ENDPOINT,
        f"The {what} URL {_safe_url(url)} is not HTTPS; use https:// (plain http is allowed only to localhost).",
    )


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def _excerpt(text: str) -> str:
    return _JWT.sub("<token>", " ".join(text.split()))[:EXCERPT_CHARS]


def _error_sentence(text: str) -> str:
    """The `error` a JSON refusal gives (the reference token server's, tokenserver/), excerpted; else nothing."""
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    return _excerpt(error) if isinstance(error, str) else ""


async def _read_capped(resp: aiohttp.ClientResponse) -> str:
    """The answer's text, refusing (without reading it all) one over MAX_ANSWER_BYTES."""
    body = b""
    while len(body) <= MAX_ANSWER_BYTES:
        chunk = await resp.content.read(MAX_ANSWER_BYTES + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > MAX_ANSWER_BYTES:
        raise TokenError(FailureReason.TOKEN_ENDPOINT, f"The token endpoint's answer is too large (over "
                         f"{MAX_ANSWER_BYTES // 1024} KiB); check livekit.endpoint.", status=resp.status)
    try:
        return body.decode(resp.charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


class EndpointSource:
    """LiveKit's standard token endpoint. Redirects are followed by hand so every hop is checked before any
    byte (headers may carry a device credential) is sent to it."""

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None, timeout_s: float = 10.0):
        check_url(url)
        self.url = url
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s

    async def fetch(self, request: TokenRequest) -> Credentials:
        import aiohttp

        url = self.url
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        headers = {"Content-Type": "application/json", **self.headers}
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                for _ in range(MAX_REDIRECTS + 1):
                    async with http.post(url, json=request.body(), headers=headers, allow_redirects=False) as resp:
                        if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                            url = urljoin(url, resp.headers["Location"])
                            check_url(url, "token endpoint's redirect")
                            continue
                        return self._parse(resp.status, await _read_capped(resp))
                raise TokenError(FailureReason.TOKEN_ENDPOINT, f"The token endpoint redirected more than "
                                 f"{MAX_REDIRECTS} times; check livekit.endpoint.")
        except TokenError:
            raise
        except TimeoutError:
            raise TokenError(FailureReason.UNREACHABLE, f"The token endpoint {_safe_url(url)} did not answer within "
                             f"{self.timeout_s:g} s; check the network or raise livekit.http_timeout_s.") from None
        except aiohttp.ClientError as e:
            raise TokenError(FailureReason.UNREACHABLE, f"The token endpoint {_safe_url(url)} could not be reached "
                             f"({type(e).__name__}); check the network and livekit.endpoint.") from None

    def _parse(self, status: int, text: str) -> Credentials:
        if status in (401, 403):
            why = _error_sentence(text)
            raise TokenError(FailureReason.AUTH, f"The token endpoint refused this device (HTTP {status}"
                             f"{': ' + why if why else ''}); check livekit.endpoint_headers.", status=status,
                             excerpt=_excerpt(text))
        if not 200 <= status < 300:
            raise TokenError(FailureReason.TOKEN_ENDPOINT, f"The token endpoint answered HTTP {status}: "
                             f"{_excerpt(text)!r}; check its logs.", status=status, excerpt=_excerpt(text))
        try:
            data = json.loads(text)
        except ValueError:
            raise TokenError(FailureReason.TOKEN_ENDPOINT, f"The token endpoint answered HTTP {status} with "
                             f"something that is not JSON: {_excerpt(text)!r}.", status=status,
                             excerpt=_excerpt(text)) from None
        if not isinstance(data, dict):
            raise TokenError(FailureReason.TOKEN_ENDPOINT, "The token endpoint's JSON is not an object.",
                             status=status)
        missing = [k for k in ("server_url", "participant_token") if not isinstance(data.get(k), str) or not data[k]]
        if missing:
            # the excerpt names the keys only: the body may hold a token
            keys = ", ".join(sorted(map(str, data)))
            raise TokenError(FailureReason.TOKEN_ENDPOINT, f"The token endpoint's answer lacks {', '.join(missing)} "
                             f"(it has: {keys or 'nothing'}).", status=status, excerpt=f"keys: {keys}")
        return Credentials(server_url=data["server_url"], participant_token=data["participant_token"])


class SandboxSource(EndpointSource):
    """LiveKit Cloud's sandbox token server: the standard format, selected by `X-Sandbox-ID`."""

    def __init__(self, sandbox_id: str, *, url: str = SANDBOX_URL, timeout_s: float = 10.0):
        super().__init__(url, headers={"X-Sandbox-ID": sandbox_id}, timeout_s=timeout_s)


class LiteralSource:
    """A fixed URL and token from config; an expired token is reported before any connect."""

    def __init__(self, url: str, token: str, wall: Callable[[], float] = time.time):
        self.creds = Credentials(server_url=url, participant_token=token)
        self._wall = wall

    async def fetch(self, request: TokenRequest) -> Credentials:
        claims = self.creds.claims() or {}
        exp = claims.get("exp")
        if isinstance(exp, (int, float)) and exp <= self._wall():
            raise TokenError(FailureReason.AUTH, "livekit.token has expired; mint a new one or use a token endpoint.")
        return self.creds


class LocalSource:
    """Mints tokens on the device with livekit-api (development: the API secret belongs on a token server)."""

    _warned = False

    def __init__(self, url: str, api_key: str, api_secret: str, ttl_s: int = 3600):
        self.url = url
        self._key = api_key
        self._secret = api_secret
        self.ttl_s = ttl_s

    async def fetch(self, request: TokenRequest) -> Credentials:
        import warnings

        from device.session.mint import mint_token

        if not LocalSource._warned:
            LocalSource._warned = True
            log.warning("token source=local: the API secret lives on this device; use a token endpoint in production")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # short development secrets such as livekit-server --dev's
            token = mint_token(
                self._key, self._secret, room=request.room_name, identity=request.participant_identity,
                name=request.participant_name, metadata=request.participant_metadata,
                attributes=dict(request.participant_attributes), agent_name=request.agent_name,
                agent_metadata=request.agent_metadata, ttl=timedelta(seconds=self.ttl_s),
            )
        return Credentials(server_url=self.url, participant_token=token)


def make_token_source(cfg: LiveKitConfig) -> TokenSource:
    """The source `livekit.token_source` names; a missing key is a one-sentence error."""

    def need(value: str | None, key: str) -> str:
        if not value:
            raise TokenError(FailureReason.TOKEN_ENDPOINT, f"livekit.token_source={cfg.token_source} needs {key}.")
        return value

    if cfg.token_source == "endpoint":
        return EndpointSource(need(cfg.endpoint, "livekit.endpoint"), headers=cfg.endpoint_headers,
                              timeout_s=cfg.http_timeout_s)
    if cfg.token_source == "sandbox":
        return SandboxSource(need(cfg.sandbox_id, "livekit.sandbox_id"), timeout_s=cfg.http_timeout_s)
    if cfg.token_source == "literal":
        return LiteralSource(need(cfg.url, "livekit.url"), need(cfg.token, "livekit.token"))
    if cfg.token_source == "local":
        return LocalSource(need(cfg.url, "livekit.url"), need(cfg.api_key, "livekit.api_key"),
                           need(cfg.api_secret, "livekit.api_secret"), ttl_s=cfg.token_ttl_s)
    raise TokenError(FailureReason.TOKEN_ENDPOINT, f"unknown livekit.token_source {cfg.token_source!r}")


class TokenCache:
    """Reuses a token while it is valid for at least another minute and the request is unchanged."""

    def __init__(self, source: TokenSource, wall: Callable[[], float] = time.time):
        self.source = source
        self._wall = wall
        self._entry: tuple[TokenRequest, Credentials] | None = None
        self.fetches = 0

    def usable(self, creds: Credentials) -> bool:
        claims = creds.claims()
        if claims is None:
            return False
        now = self._wall()
        nbf, exp = claims.get("nbf", 0), claims.get("exp")
        if not isinstance(nbf, (int, float)) or not isinstance(exp, (int, float)):
            return False
        return nbf <= now and exp - EXPIRY_MARGIN_S > now

    async def get(self, request: TokenRequest, *, fresh: bool = False) -> Credentials:
        if not fresh and self._entry is not None:
            cached_request, creds = self._entry
            if cached_request == request and self.usable(creds):
                return creds
        self._entry = None
        self.fetches += 1
        creds = await self.source.fetch(request)
        self._entry = (request, creds)
        return creds

    def invalidate(self) -> None:
        self._entry = None
