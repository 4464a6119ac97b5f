"""`serve`'s configuration: a good one read whole, and every bad one a sentence naming the key to fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from voice_device_tokens.config import ConfigError, RateLimits, parse

from tests.tokenserver.harness import API_SECRET, PACKAGE_DIR

GOOD = {
    "listen": {"host": "0.0.0.0", "port": 8443},
    "store": "devices.sqlite",
    "livekit": {"nodes": ["wss://lk-a.example.com", "wss://lk-b.example.com"], "api_key": "APIk"},
    "groups": {"kiosks": {"agent_name": "kiosk-agent", "ttl_s": 600}, "speakers": {}},
}


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_API_SECRET", API_SECRET)


def with_(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in GOOD.items()}
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        table = data
        for p in parents:
            table = table[p]  # type: ignore[assignment]
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return data


def test_a_good_configuration_is_read_with_its_defaults(tmp_path: Path) -> None:
    c = parse(GOOD, tmp_path)
    assert (c.host, c.port, c.path, c.tls, c.store) == ("0.0.0.0", 8443, "/voice-device", None,
                                                         tmp_path / "devices.sqlite")
    assert c.nodes == ("wss://lk-a.example.com", "wss://lk-b.example.com") and c.api_secret == API_SECRET
    assert c.groups["kiosks"].ttl_s == 600 and c.groups["speakers"].ttl_s == c.default_ttl_s == 3600
    assert c.groups["speakers"].agent_name is None and c.limits == RateLimits()
    assert API_SECRET not in repr(c)


def test_the_secret_can_come_from_a_file_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-a-file-" + "x" * 32 + "\n")
    c = parse(with_(livekit__api_secret_file="secret"), tmp_path)
    assert c.api_secret == "from-a-file-" + "x" * 32


@pytest.mark.parametrize(("changes", "names"), [
    ({"livekit__api_secret": "plain"}, "livekit.api_secret"),
    ({"livekit__api_secret_env": "NO_SUCH_VARIABLE_HERE"}, "livekit.api_secret_env"),
    ({"livekit__api_secret_file": "missing"}, "livekit.api_secret_file"),
    ({"livekit__nodes": []}, "livekit.nodes"),
    ({"livekit__nodes": ["lk.example.com"]}, "livekit.nodes[0]"),
    ({"livekit__api_key": None}, "livekit.api_key"),
    ({"listen__port": "eighty"}, "listen.port"),
    ({"listen__port": 70000}, "listen.port"),
    ({"listen__hots": "x"}, "listen.hots"),
    ({"store": None}, "store"),
    ({"groups": {}}, "groups"),
    ({"groups": {"bad name": {}}}, "groups.bad name"),
    ({"groups": {"k": {"agent_name": 3}}}, "groups.k.agent_name"),
    ({"groups": {"k": {"ttl_s": 5}}}, "groups.k.ttl_s"),
    ({"rate_limits": {"per_device": {"burst": 0}}}, "rate_limits.per_device.burst"),
    ({"rate_limits": {"failed_auth": {"per_minute": "lots"}}}, "rate_limits.failed_auth.per_minute"),
    ({"tls": {"cert": "c.pem", "key": "k.pem"}}, "tls.cert"),
    ({"path": "voice-device"}, "path"),
])
def test_a_bad_value_names_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: dict[str, object],
                                   names: str) -> None:
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    with pytest.raises(ConfigError) as e:
        parse(with_(**changes), tmp_path)
    assert str(e.value).startswith(names + " ") or str(e.value).startswith(names + ":"), str(e.value)


def test_a_file_that_is_not_a_mapping_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse(["a", "list"], tmp_path)


def test_the_example_configuration_in_the_repository_is_valid(tmp_path: Path) -> None:
    data = yaml.safe_load((PACKAGE_DIR / "tokens.example.yaml").read_text())
    del data["tls"]  # its certificate paths are the operator's
    c = parse(data, tmp_path)
    assert c.path == "/voice-device" and c.groups["kiosks"].agent_name == "kiosk-agent" and len(c.nodes) == 2
