"""Load and validate a YAML configuration into `Config`.

Every error is a `ConfigError` naming the file, the line and the key path. The YAML is composed into nodes
(not loaded into plain dicts) so that each value keeps its line. `${VAR}` and `${VAR:-default}` are expanded in
strings; LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET from the environment override the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import grp
import logging
import os
import re
import stat
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from device.config import wake_models
from device.config.errors import ConfigError
from device.config.led_kinds import LED_KINDS
from device.config.schema import Config
from device.core.dynamic import FieldValue, TypeForm

log = logging.getLogger("device.config")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
ENV_OVERRIDES = {"LIVEKIT_URL": "url", "LIVEKIT_API_KEY": "api_key", "LIVEKIT_API_SECRET": "api_secret"}
SERVICE_GROUP = "voice-device"


@dataclasses.dataclass
class _Ctx:
    file: str
    env: Mapping[str, str]
    dir: Path | None = None  # relative paths in the file are relative to its folder
    lines: dict[str, int] = dataclasses.field(default_factory=dict)
    literal_secrets: list[str] = dataclasses.field(default_factory=list)

    def error(self, message: str, node: yaml.Node | None, key: str) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else self.lines.get(key)
        return ConfigError(message, file=self.file, line=line, key=key)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file; pass --config with a path to a YAML file", file=str(p)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read: {e}", file=str(p)) from None
    ctx = _Ctx(file=p.name, env=os.environ if env is None else env, dir=p.resolve().parent)
    config = _load(text, ctx, source=str(p))
    if ctx.literal_secrets:
        _warn_if_readable(p)
    return config


def load_config_text(text: str, name: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    return _load(text, _Ctx(file=name, env={} if env is None else env), source=name)


def _load(text: str, ctx: _Ctx, source: str) -> Config:
    root = _compose(text, ctx)
    try:
        config = _build(Config, root, "", ctx)
    except yaml.MarkedYAMLError as e:  # a scalar PyYAML cannot construct (an unknown tag, a bad !!timestamp)
        mark = e.problem_mark or e.context_mark
        raise ConfigError(f"invalid YAML: {e.problem or e.context}", file=ctx.file,
                          line=mark.line + 1 if mark else None) from None
    config = _apply_env_overrides(config, ctx)
    config = _cross_checks(config, ctx)
    return dataclasses.replace(config, source=source)


def _compose(text: str, ctx: _Ctx) -> yaml.Node | None:
    try:
        loader = yaml.SafeLoader(text)  # the reader rejects control characters here, before any parsing
    except yaml.reader.ReaderError as e:
        at = text.count("\n", 0, e.position) + 1
        raise ConfigError(f"invalid YAML: character {e.character!r} is not allowed", file=ctx.file, line=at) \
            from None
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line: int | None = mark.line + 1 if mark else None
        raise ConfigError(f"invalid YAML: {e.problem or e.context}", file=ctx.file, line=line) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}", file=ctx.file) from None
    finally:
        loader.dispose()


_constructor = yaml.SafeLoader("")


def _scalar(node: yaml.Node) -> FieldValue:
    try:
        return _constructor.construct_object(node, deep=True)
    except yaml.YAMLError:
        raise
    except Exception:  # some of PyYAML's constructors crash on malformed input (`!!timestamp x`: AttributeError)
        raise yaml.constructor.ConstructorError(None, None, f"cannot read this value as {node.tag}",
                                                node.start_mark) from None


def _is_null(node: yaml.Node | None) -> bool:
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null")


def _build(cls: type, node: yaml.Node | None, path: str, ctx: _Ctx) -> FieldValue:
    if _is_null(node):
        return cls()
    assert node is not None
    if not isinstance(node, yaml.MappingNode):
        raise ctx.error(f"expected a mapping of keys, got {_describe(node)}", node, path or "(top level)")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, FieldValue] = {}
    for key_node, value_node in node.value:
        key = _scalar(key_node)
        keypath = f"{path}.{key}" if path else str(key)
        if not isinstance(key, str):
            raise ctx.error("keys must be strings", key_node, keypath)
        if key in kwargs:
            raise ctx.error("duplicate key", key_node, keypath)
        if key not in fields:
            hint = difflib.get_close_matches(key, list(fields), n=1)
            did_you_mean = f"; did you mean '{hint[0]}'?" if hint else f"; known keys: {', '.join(fields)}"
            raise ctx.error(f"unknown key{did_you_mean}", key_node, keypath)
        ctx.lines[keypath] = key_node.start_mark.line + 1
        kwargs[key] = _value(hints[key], fields[key].metadata, value_node, keypath, ctx)
    return cls(**kwargs)


def _unwrap_optional(tp: TypeForm) -> tuple[TypeForm, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _value(tp: TypeForm, meta: Mapping[str, FieldValue], node: yaml.Node, keypath: str, ctx: _Ctx) -> FieldValue:
    tp, optional = _unwrap_optional(tp)
    if _is_null(node):
        if optional:
            return None
        raise ctx.error("a value is required here (got nothing)", node, keypath)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, node, keypath, ctx)
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(node, yaml.SequenceNode):
            raise ctx.error(f"expected a list, got {_describe(node)}", node, keypath)
        item_tp = typing.get_args(tp)[0]
        for i, n in enumerate(node.value):
            ctx.lines[f"{keypath}[{i}]"] = n.start_mark.line + 1
        return tuple(_scalar_value(item_tp, meta, n, f"{keypath}[{i}]", ctx) for i, n in enumerate(node.value))
    if origin is dict:
        if not isinstance(node, yaml.MappingNode):
            raise ctx.error(f"expected a mapping, got {_describe(node)}", node, keypath)
        value_tp = typing.get_args(tp)[1]
        out: dict[str, FieldValue] = {}
        for k_node, v_node in node.value:
            k = _scalar(k_node)
            sub = f"{keypath}.{k}"
            allowed = meta.get("keys")
            if allowed and k not in allowed:
                hint = difflib.get_close_matches(str(k), allowed, n=1)
                extra = f"did you mean '{hint[0]}'?" if hint else f"expected one of {', '.join(allowed)}"
                raise ctx.error(f"unknown key; {extra}", k_node, sub)
            if str(k) in out:
                raise ctx.error("duplicate key", k_node, sub)
            ctx.lines[sub] = k_node.start_mark.line + 1
            out[str(k)] = _scalar_value(value_tp, meta, v_node, sub, ctx, coerce_str=value_tp is str)
        return types.MappingProxyType(out)
    return _scalar_value(tp, meta, node, keypath, ctx)


def _scalar_value(
    tp: TypeForm, meta: Mapping[str, FieldValue], node: yaml.Node, keypath: str, ctx: _Ctx, coerce_str: bool = False
) -> FieldValue:
    if not isinstance(node, yaml.ScalarNode):
        raise ctx.error(f"expected a single value, got {_describe(node)}", node, keypath)
    raw = _scalar(node)
    if isinstance(raw, str) and "${" in raw:
        raw = _expand(raw, node, keypath, ctx)
        if tp is not str:  # "${PORT}" in a number field: parse the expanded text as YAML would
            raw = yaml.safe_load(raw) if raw.strip() else None
    elif isinstance(raw, str) and meta.get("secret") and raw:
        ctx.literal_secrets.append(keypath)
    if coerce_str and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = str(raw)
    value = _coerce(tp, raw, node, keypath, ctx)
    _check_bounds(value, meta, node, keypath, ctx)
    return value


def _coerce(tp: TypeForm, raw: FieldValue, node: yaml.Node, keypath: str, ctx: _Ctx) -> FieldValue:
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        raise ctx.error(f"expected true or false, got {raw!r}", node, keypath)
    if tp is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        raise ctx.error(f"expected a whole number, got {raw!r}", node, keypath)
    if tp is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        raise ctx.error(f"expected a number, got {raw!r}", node, keypath)
    if tp is str:
        if isinstance(raw, str):
            return raw
        raise ctx.error(f"expected text, got {raw!r} (quote it)", node, keypath)
    raise ctx.error(f"unsupported type {tp}", node, keypath)  # pragma: no cover - schema bug


def _check_bounds(value: FieldValue, meta: Mapping[str, FieldValue], node: yaml.Node, keypath: str, ctx: _Ctx
                  ) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        listed = ", ".join(str(c) for c in choices)
        hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint and isinstance(value, str) else ""
        raise ctx.error(f"expected one of {listed}, got {value!r}{extra}", node, keypath)
    if "min" in meta and value < meta["min"]:
        raise ctx.error(f"must be at least {meta['min']}, got {value!r}", node, keypath)
    if "max" in meta and value > meta["max"]:
        raise ctx.error(f"must be at most {meta['max']}, got {value!r}", node, keypath)
    kind = meta.get("kind")
    if kind and isinstance(value, str):
        problem = prom_file_problem(value) if kind == "prom_file" else url_problem(value, kind)
        if problem:
            raise ctx.error(problem, node, keypath)


def prom_file_problem(value: str) -> str | None:
    """Why `value` cannot be a file for node_exporter's textfile collector, or None when it can."""
    if not value.startswith("/") or not value.endswith(".prom") or value.endswith("/.prom"):
        return (f"expected an absolute path to a file whose name ends in .prom (node_exporter's textfile collector "
                f"reads no other), e.g. /var/lib/prometheus/node-exporter/voice-device.prom, got {value!r}")
    return None


def url_problem(value: str, kind: str) -> str | None:
    """Why `value` is not a usable URL of `kind` ('ws_url' or 'http_url'), or None when it is."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
        _ = parts.port
    except ValueError as e:
        return f"malformed URL {value!r}: {e}"
    schemes = ("ws", "wss", "http", "https") if kind == "ws_url" else ("http", "https")
    if parts.scheme not in schemes or not host:
        shown = "wss://host[:port]" if kind == "ws_url" else "https://host/path"
        return f"malformed URL {value!r}: expected {shown}"
    if kind == "http_url" and parts.scheme == "http" and host not in _LOCAL_HOSTS:
        return f"tokens must travel over TLS: use https:// (plain http is allowed only to localhost), got {value!r}"
    return None


def _expand(text: str, node: yaml.Node, keypath: str, ctx: _Ctx) -> str:
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in ctx.env:
            return ctx.env[name]
        if default is not None:
            return default
        raise ctx.error(f"environment variable {name} is not set (or give a default: ${{{name}:-value}})",
                        node, keypath)

    return _ENV_REF.sub(sub, text)


def _apply_env_overrides(config: Config, ctx: _Ctx) -> Config:
    changes: dict[str, FieldValue] = {}  # LiveKitConfig field → value (dataclasses.replace takes them by name)
    for var, attr in ENV_OVERRIDES.items():
        value = ctx.env.get(var)
        if value:
            changes[attr] = value
    if not changes:
        return config
    if "url" in changes:
        problem = url_problem(changes["url"], "ws_url")
        if problem:
            raise ConfigError(problem, file="environment", key="LIVEKIT_URL")
    livekit = dataclasses.replace(config.livekit, **changes)
    if "api_key" in changes and "api_secret" in changes and config.livekit.token_source != "local":
        # Credentials in the environment mean "talk to that server directly", as livekit-server --dev users expect.
        livekit = dataclasses.replace(livekit, token_source="local")
    return dataclasses.replace(config, livekit=livekit)


_REQUIRED_BY_SOURCE = {
    "endpoint": ("endpoint",),
    "sandbox": ("sandbox_id",),
    "literal": ("url", "token"),
    "local": ("url", "api_key", "api_secret"),
}


def _cross_checks(config: Config, ctx: _Ctx) -> Config:
    lk = config.livekit
    for attr in _REQUIRED_BY_SOURCE[lk.token_source]:
        if not getattr(lk, attr):
            key = f"livekit.{attr}"
            raise ConfigError(
                f"required when livekit.token_source is {lk.token_source!r}",
                file=ctx.file, line=ctx.lines.get("livekit.token_source") or ctx.lines.get("livekit"), key=key,
            )
    audio = config.audio
    if audio.input_channel is not None and audio.input_channel >= audio.input_channels:
        raise ConfigError(f"channel {audio.input_channel} does not exist with audio.input_channels: "
                          f"{audio.input_channels} (channels count from 0)", file=ctx.file,
                          line=ctx.lines.get("audio.input_channel"), key="audio.input_channel")
    leds = config.controls.leds
    hardware = LED_KINDS[leds.kind]  # a choice of the schema: a row of the table
    if problem := hardware.pins_problem(leds.pins):
        raise ConfigError(problem, file=ctx.file,
                          line=ctx.lines.get("controls.leds.pins") or ctx.lines.get("controls.leds"),
                          key="controls.leds.pins")
    led_gpios = () if hardware.spi else leds.pins  # an SPI kind drives no GPIO of controls.leds.pins
    pins: dict[int, str] = {}
    if leds.power_pin is not None and leds.kind != "none":
        if leds.power_pin in led_gpios:
            raise ConfigError(f"GPIO {leds.power_pin} is already used by controls.leds.pins", file=ctx.file,
                              line=ctx.lines.get("controls.leds.power_pin"), key="controls.leds.power_pin")
        pins[leds.power_pin] = "controls.leds.power_pin"
    for name in ("button", "mute_button", "volume_up_button", "volume_down_button"):
        button = getattr(config.controls, name)
        if button is None:
            continue
        key = f"controls.{name}.pin"
        if button.pin in pins or button.pin in led_gpios:
            other = pins.get(button.pin, "controls.leds.pins")
            raise ConfigError(f"GPIO {button.pin} is already used by {other}",
                              file=ctx.file, line=ctx.lines.get(key), key=key)
        pins[button.pin] = key
    return _check_wake_word(config, ctx)


def _check_wake_word(config: Config, ctx: _Ctx) -> Config:
    """Every wake-word model must exist (a built-in name, or a JSON file whose model file exists); relative paths
    become absolute (the daemon runs from /); cutoffs must name a configured model."""
    ww = config.wake_word
    if not ww.models:
        raise ConfigError("list at least one wake word (e.g. [okay_nabu])", file=ctx.file,
                          line=ctx.lines.get("wake_word.models"), key="wake_word.models")
    resolved: list[str] = []
    names: dict[str, str] = {}
    for i, spec in enumerate(ww.models):
        key = f"wake_word.models[{i}]"
        line = ctx.lines.get(key) or ctx.lines.get("wake_word.models")
        try:
            description = wake_models.describe(spec, ctx.dir)
        except wake_models.ModelSpecError as e:
            raise ConfigError(str(e), file=ctx.file, line=line, key=key) from None
        if description.name in names:
            raise ConfigError(f"{description.name!r} is listed twice (also {names[description.name]})",
                              file=ctx.file, line=line, key=key)
        names[description.name] = key
        resolved.append(str(description.json_path) if wake_models.is_path(spec) else spec)
    for name in ww.cutoffs:
        if name not in names:
            key = f"wake_word.cutoffs.{name}"
            raise ConfigError(f"no such model in wake_word.models (they are {', '.join(names)})", file=ctx.file,
                              line=ctx.lines.get(key), key=key)
    return dataclasses.replace(config, wake_word=dataclasses.replace(ww, models=tuple(resolved)))


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return repr(_scalar(node))


def _warn_if_readable(path: Path) -> None:
    try:
        st = path.stat()
    except OSError:
        return
    mode = stat.S_IMODE(st.st_mode)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    if mode & 0o004 or (mode & 0o040 and group != SERVICE_GROUP):
        log.warning(
            "config holds secrets and is readable by others file=%s mode=%o group=%s "
            "fix='chmod 640 %s; chown root:%s %s'", path, mode, group, path, SERVICE_GROUP, path,
        )
