"""Frozen dataclasses ↔ JSON values, for boundaries that speak JSON (the control socket, the status file).

`to_json` renders a dataclass as nested dicts, lists and scalars (enums by value, read-only maps as dicts);
`from_json(cls, data)` rebuilds one from what a peer sent, by the field types, and raises `DecodeError` naming
the field that does not fit. Supported field types: dataclasses, str/int/float/bool, StrEnums, `X | None`,
`tuple[X, ...]`, `Mapping[str, X]` — what the status types use, nothing more.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from device.core.dynamic import JSON, TypeForm

T = TypeVar("T")


class DecodeError(ValueError):
    """What a peer sent does not fit the type; the message names the field."""


def to_json(value: object) -> JSON:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    return value


def from_json(cls: type[T], data: object, where: str = "") -> T:
    return cast(T, _decode(cls, data, where or cls.__name__))


def _decode(tp: TypeForm, data: object, where: str) -> object:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if data is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _decode(option, data, where)
            except DecodeError:
                continue
        raise DecodeError(f"{where}: {data!r} fits none of {tp}")
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if not isinstance(data, list | tuple):
            raise DecodeError(f"{where}: expected a list, got {type(data).__name__}")
        return tuple(_decode(item, v, f"{where}[{i}]") for i, v in enumerate(data))
    if origin in (Mapping, dict, typing.Mapping):
        value_type = typing.get_args(tp)[1]
        if not isinstance(data, dict):
            raise DecodeError(f"{where}: expected an object, got {type(data).__name__}")
        return types.MappingProxyType({str(k): _decode(value_type, v, f"{where}.{k}") for k, v in data.items()})
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise DecodeError(f"{where}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(tp)
        kwargs = {f.name: _decode(hints[f.name], data[f.name], f"{where}.{f.name}")
                  for f in dataclasses.fields(tp) if f.name in data}  # absent: the field's default (older peer)
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            raise DecodeError(f"{where}: {data!r} is not a {tp.__name__}") from None
    if tp is float and isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    if tp in (str, int, bool) and type(data) is tp:
        return data
    if tp is object or tp is Any:
        return data
    raise DecodeError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {type(data).__name__}")
