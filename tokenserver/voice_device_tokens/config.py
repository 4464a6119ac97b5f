"""`serve`'s YAML configuration → one frozen `Config`; every error is a sentence naming the key to fix.

    listen: {host: 0.0.0.0, port: 8443}
    tls: {cert: /etc/voice-device-tokens/cert.pem, key: /etc/voice-device-tokens/key.pem}   # optional: HTTPS
    path: /voice-device                      # where devices POST (default)
    store: /var/lib/voice-device-tokens/devices.sqlite
    livekit:
      nodes: [wss://lk-a.example.com, wss://lk-b.example.com]   # cluster nodes, or one load balancer
      api_key: APIxxxxxxxx                   # or the environment's LIVEKIT_API_KEY
      api_secret_env: LIVEKIT_API_SECRET     # default; or api_secret_file: /run/credentials/...
      health_interval_s: 2
    default_ttl_s: 3600
    groups:
      kiosks: {agent_name: kiosk-agent, ttl_s: 900}
    rate_limits:
      per_device: {burst: 5, per_minute: 12}
      failed_auth: {burst: 10, per_minute: 10}   # per client address
      client_address_header: X-Forwarded-For    # behind a proxy: its last entry is the client

Relative paths are relative to this file's folder. The API secret never comes from this file in plain text:
from the environment (`api_secret_env`) or from a file of its own (`api_secret_file`, e.g. a systemd credential).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from voice_device_tokens.credential import NAME_RULE, valid_name


class ConfigError(Exception):
    """The configuration cannot be used; `str()` names the key and what to write."""


@dataclass(frozen=True)
class Group:
    agent_name: str | None
    agent_metadata: str | None
    ttl_s: int


@dataclass(frozen=True)
class Bucket:
    burst: int
    per_minute: float


@dataclass(frozen=True)
class RateLimits:
    per_device: Bucket = Bucket(burst=5, per_minute=12)
    failed_auth: Bucket = Bucket(burst=10, per_minute=10)
    client_address_header: str | None = None


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Config:
    host: str
    port: int
    path: str
    tls: Tls | None
    store: Path
    nodes: tuple[str, ...]
    api_key: str
    api_secret: str = field(repr=False)
    health_interval_s: float
    default_ttl_s: int
    groups: Mapping[str, Group]
    limits: RateLimits


def _table(value: object, key: str, known: set[str]) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key or 'the configuration'} must be a mapping of keys to values")
    for k in value:
        if str(k) not in known:
            where = f"{key}.{k}" if key else str(k)
            raise ConfigError(f"{where} is not a known key; the keys here are {', '.join(sorted(known))}")
    return {str(k): v for k, v in value.items()}


def _text(table: dict[str, object], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}{key} must be set to a non-empty string")
    return value


def _number(table: dict[str, object], key: str, where: str, default: float, *, low: float, whole: bool) -> float:
    value = table.get(key, default)
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float) or (whole and not isinstance(value, int)):
        raise ConfigError(f"{where}{key} must be {kind} (got {value!r})")
    if value < low:
        raise ConfigError(f"{where}{key} must be at least {low:g} (got {value!r})")
    return float(value)


def _node(url: object, where: str) -> str:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("ws", "wss", "http", "https") or not parts.hostname:
        raise ConfigError(f"{where} must be a LiveKit URL such as wss://lk.example.com (got {url!r})")
    assert isinstance(url, str)
    return url


def _secret(table: dict[str, object], base: Path) -> str:
    if "api_secret" in table:
        raise ConfigError("livekit.api_secret: the API secret is never read from this file; put it in the "
                          "environment variable LIVEKIT_API_SECRET (or the one livekit.api_secret_env names) or "
                          "in a file named by livekit.api_secret_file")
    if "api_secret_file" in table:
        path = base / _text(table, "api_secret_file", "livekit.")
        try:
            secret = path.read_text().strip()
        except OSError as e:
            raise ConfigError(f"livekit.api_secret_file {path} cannot be read ({e.strerror})") from None
        if not secret:
            raise ConfigError(f"livekit.api_secret_file {path} is empty")
        return secret
    name = _text(table, "api_secret_env", "livekit.", "LIVEKIT_API_SECRET")
    secret = os.environ.get(name, "").strip()
    if not secret:
        raise ConfigError(f"livekit.api_secret_env: the environment variable {name} is not set; it must hold "
                          "the LiveKit API secret")
    return secret


def _groups(value: object, default_ttl: int) -> dict[str, Group]:
    table = value if isinstance(value, dict) else None
    if not table:
        raise ConfigError("groups must name at least one group, e.g. groups: {kiosks: {agent_name: kiosk-agent}}")
    groups = {}
    for name, spec in table.items():
        if not valid_name(str(name)):
            raise ConfigError(f"groups.{name} is not a valid group name: use {NAME_RULE}")
        where = f"groups.{name}."
        g = _table(spec, where[:-1], {"agent_name", "agent_metadata", "ttl_s"})
        agent = _text(g, "agent_name", where) if "agent_name" in g else None
        metadata = _text(g, "agent_metadata", where) if "agent_metadata" in g else None
        ttl = int(_number(g, "ttl_s", where, default_ttl, low=60, whole=True))
        groups[str(name)] = Group(agent, metadata, ttl)
    return groups


def _bucket(value: object, key: str, default: Bucket) -> Bucket:
    table = _table(value, key, {"burst", "per_minute"})
    burst = int(_number(table, "burst", key + ".", default.burst, low=1, whole=True))
    return Bucket(burst, _number(table, "per_minute", key + ".", default.per_minute, low=0.01, whole=False))


def _limits(value: object) -> RateLimits:
    table = _table(value, "rate_limits", {"per_device", "failed_auth", "client_address_header"})
    header = _text(table, "client_address_header", "rate_limits.") if "client_address_header" in table else None
    base = RateLimits()
    return RateLimits(_bucket(table.get("per_device"), "rate_limits.per_device", base.per_device),
                      _bucket(table.get("failed_auth"), "rate_limits.failed_auth", base.failed_auth), header)


def _tls(value: object, base: Path) -> Tls | None:
    if value is None:
        return None
    table = _table(value, "tls", {"cert", "key"})
    tls = Tls(base / _text(table, "cert", "tls."), base / _text(table, "key", "tls."))
    for key, path in (("cert", tls.cert), ("key", tls.key)):
        if not path.is_file():
            raise ConfigError(f"tls.{key}: no such file {path}")
    return tls


def parse(data: object, base: Path) -> Config:
    """The configuration in `data`; relative paths in it are relative to `base` (the file's folder)."""
    top = _table(data, "", {"listen", "tls", "path", "store", "livekit", "default_ttl_s", "groups", "rate_limits"})
    listen = _table(top.get("listen"), "listen", {"host", "port"})
    port = int(_number(listen, "port", "listen.", 8080, low=0, whole=True))
    if port > 65535:
        raise ConfigError(f"listen.port must be at most 65535 (got {port})")
    path = _text(top, "path", "", "/voice-device")
    if not path.startswith("/") or path == "/healthz":
        raise ConfigError(f"path must start with / and not be /healthz (got {path!r})")
    lk = _table(top.get("livekit"), "livekit",
                {"nodes", "api_key", "api_secret", "api_secret_env", "api_secret_file", "health_interval_s"})
    nodes = lk.get("nodes")
    if isinstance(nodes, str):
        nodes = [nodes]
    if not isinstance(nodes, list) or not nodes:
        raise ConfigError("livekit.nodes must list the LiveKit node URLs (or one load balancer's URL)")
    api_key = _text(lk, "api_key", "livekit.", os.environ.get("LIVEKIT_API_KEY"))
    ttl = int(_number(top, "default_ttl_s", "", 3600, low=60, whole=True))
    return Config(
        host=_text(listen, "host", "listen.", "127.0.0.1"), port=port, path=path, tls=_tls(top.get("tls"), base),
        store=base / _text(top, "store", ""),
        nodes=tuple(_node(url, f"livekit.nodes[{i}]") for i, url in enumerate(nodes)),
        api_key=api_key, api_secret=_secret(lk, base),
        health_interval_s=_number(lk, "health_interval_s", "livekit.", 2.0, low=0.1, whole=False),
        default_ttl_s=ttl, groups=_groups(top.get("groups"), ttl), limits=_limits(top.get("rate_limits")),
    )


def load(path: Path) -> Config:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"the configuration {path} cannot be read ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"the configuration {path} is not valid YAML{where}") from None
    return parse(data, path.parent)
