"""What a fresh install still has to be told: the profiles' placeholders, found in a loaded config.

The profiles ship `${VOICE_DEVICE_TOKEN_ENDPOINT:-https://tokens.example.invalid/...}` and
`Bearer ${VOICE_DEVICE_CREDENTIAL:-unset}` so that they load before anyone has a token server; a config that
still resolves to them cannot work. `placeholders()` lists each one in use as a `ConfigError` naming the file,
the line and what to set; `read_env_file()` reads systemd's EnvironmentFile= (so `voice-device check` sees
the values the service gets).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from device.config.errors import ConfigError
from device.config.schema import Config

# RFC 2606/6761 names that never resolve to anyone's server.
_RESERVED_TLDS = (".invalid", ".example", ".test")
_RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
_UNSET_CREDENTIALS = ("unset", "bearer unset", "changeme", "bearer changeme")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def is_placeholder_host(url: str) -> bool:
    try:
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:
        return False
    return host.endswith(_RESERVED_TLDS) or any(host == d or host.endswith("." + d) for d in _RESERVED_DOMAINS)


def _in_use(config: Config) -> Iterator[tuple[str, str, str]]:
    """(key path, resolved value, what it is) of each setting the configured token source uses."""
    lk = config.livekit
    if lk.token_source == "endpoint" and lk.endpoint:
        yield "livekit.endpoint", lk.endpoint, "url"
        for name, value in lk.endpoint_headers.items():
            yield f"livekit.endpoint_headers.{name}", value, "credential"
    if lk.token_source in ("literal", "local") and lk.url:
        yield "livekit.url", lk.url, "url"


def placeholders(config: Config, text: str | None = None) -> list[ConfigError]:
    """Each placeholder the config still uses, as a `file:line: key: ...` error saying what to set. `text` is
    the YAML the config came from (for the line and the variable named there); None reads `config.source`."""
    if text is None:
        try:
            text = Path(config.source).read_text(encoding="utf-8")
        except OSError:
            text = ""
    file = Path(config.source).name
    found = []
    for key, value, kind in _in_use(config):
        if kind == "url" and not is_placeholder_host(value):
            continue
        if kind == "credential" and value.strip().lower() not in _UNSET_CREDENTIALS:
            continue
        line, raw = _locate(text, key)
        variables = _ENV_REF.findall(raw)
        if variables:
            todo = f"set {' and '.join(variables)} in /etc/voice-device/env (or replace the value here)"
        else:
            todo = "replace it with your own"
        shown = value if kind == "url" else "a placeholder credential"
        found.append(ConfigError(f"still the profile's placeholder ({shown}): {todo}", file=file, line=line,
                                 key=key))
    return found


def _locate(text: str, keypath: str) -> tuple[int | None, str]:
    """The line of `keypath`'s value in the YAML text and that line's text ((None, '') if not found)."""
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None, ""
    for part in keypath.split("."):
        if not isinstance(node, yaml.MappingNode):
            return None, ""
        node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
    if node is None:
        return None, ""
    line = node.start_mark.line
    lines = text.splitlines()
    return line + 1, lines[line] if line < len(lines) else ""


def read_env_file(path: str | Path) -> dict[str, str]:
    """systemd's EnvironmentFile= format: KEY=VALUE lines, `#`/`;` comments, optional quotes around VALUE."""
    out: dict[str, str] = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            out[key] = value
    return out
