"""Configuration as plain data for people: secrets masked, and the list of secret values for log redaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from device.core.dynamic import JSON, FieldValue

MASK = "***"


def to_dict(obj: FieldValue, mask: bool = True) -> JSON:
    """A dataclass tree as plain dicts/lists, secret fields shown as `***` when `mask`."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, JSON] = {}
        for f in dataclasses.fields(obj):
            if f.metadata.get("internal"):
                continue
            value = getattr(obj, f.name)
            if mask and f.metadata.get("secret") and value:
                value = {k: MASK for k in value} if isinstance(value, Mapping) else MASK
            out[f.name] = to_dict(value, mask)
        return out
    if isinstance(obj, Mapping):
        return {k: to_dict(v, mask) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [to_dict(v, mask) for v in obj]
    return obj


def secret_values(obj: FieldValue) -> list[str]:
    """Every non-empty secret string in a config tree (for the log redaction filter)."""
    found: list[str] = []
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("secret") and value:
                found.extend(value.values() if isinstance(value, Mapping) else [value])
            elif dataclasses.is_dataclass(value):
                found.extend(secret_values(value))
    return [s for s in found if isinstance(s, str) and len(s) >= 4]
