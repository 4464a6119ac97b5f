"""Render `config/reference.yaml`: every key with its default and documentation, straight from the schema.

`python -m device.config.reference > config/reference.yaml`; a test fails when the file is stale.
"""

from __future__ import annotations

import dataclasses
import typing

import yaml

from device.config.schema import Config
from device.core.dynamic import FieldValue

HEADER = """\
# voice-device configuration reference: every key, its default and what it does.
# Generated from device/config/schema.py by `python -m device.config.reference`; do not edit by hand.
# Strings may use ${VAR} or ${VAR:-default} to take values (secrets) from the environment.
# LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET in the environment override livekit.url/api_key/api_secret
# (and, when both credentials are set, select the local token source).
"""


def _scalar(value: FieldValue) -> str:
    if isinstance(value, tuple):
        value = list(value)
    elif isinstance(value, typing.Mapping):
        value = dict(value)
    dumped: str = yaml.safe_dump(value, default_flow_style=True)
    return dumped.strip().removesuffix("...").strip()


def _checks(meta: typing.Mapping[str, FieldValue]) -> str:
    parts = []
    if "choices" in meta:
        parts.append("one of " + ", ".join(str(c) for c in meta["choices"]))
    if "min" in meta:
        parts.append(f"min {meta['min']}")
    if "max" in meta:
        parts.append(f"max {meta['max']:#o}" if meta.get("octal") else f"max {meta['max']}")
    if meta.get("secret"):
        parts.append("secret: prefer ${ENV}")
    return f" [{'; '.join(parts)}]" if parts else ""


def render(cls: type = Config, indent: int = 0) -> str:
    lines: list[str] = []
    pad = "  " * indent
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        tp = hints[f.name]
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        nested = tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None
        if nested is None and inner and isinstance(inner[0], type) and dataclasses.is_dataclass(inner[0]):
            nested = inner[0]
        doc = f.metadata.get("doc", "")
        if nested is not None:
            optional = nested is not tp
            extra = " (omit or null to disable; keys below show the defaults)" if optional else ""
            lines.append(f"{pad}# {doc}{extra}")
            lines.append(f"{pad}{f.name}:")
            lines.append(render(nested, indent + 1))
            continue
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        lines.append(f"{pad}# {doc}{_checks(f.metadata)}")
        shown = f"0{default:o}" if f.metadata.get("octal") else _scalar(default)
        lines.append(f"{pad}{f.name}: {shown}")
    return "\n".join(lines)


def reference_text() -> str:
    return HEADER + render() + "\n"


if __name__ == "__main__":
    print(reference_text(), end="")
