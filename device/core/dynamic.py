"""The few places the type checker is told "Any", each named for what it stands for and why it cannot be precise.

Everything else in `device/` is typed; a new `Any` goes here, with its reason, or is not written.
"""

from __future__ import annotations

from typing import Any

# A decoded JSON value (control socket lines, token endpoint answers, JWT claims, the status file). JSON's
# recursive union would force an isinstance at every `.get`; instead each boundary narrows once where it reads.
JSON = Any

# A type annotation as an object at run time (a class, `X | None`, `tuple[int, ...]`): the config loader and the
# codec walk these with typing.get_origin/get_args and isinstance; Python has no static type for "any type form",
# so it is `object` (not Any: what is done with one must be narrowed first).
TypeForm = object

# The value of a configuration field, whatever type its dataclass field declares (the loader builds them from
# YAML by the field's TypeForm).
FieldValue = Any

# `opt()` / `section()` in the config schema return a dataclass `field()` that stands where the attribute's value
# would: typed Any exactly as `dataclasses.field` itself is, so `x: int = opt(1, "doc")` checks.
FieldSpec = Any

# Libraries that ship no type information (PEP 561): their objects are Any to the checker; the names say which.
PyAudio = Any  # pyaudio.PyAudio
PaStream = Any  # pyaudio.Stream
GpioPin = Any  # a gpiozero pin (a MockPin under simulation)
GpioPinFactory = Any  # a gpiozero pin factory
ProtobufEnum = Any  # a protobuf enum wrapper class (its stub type is private to protobuf)
TermiosAttrs = list[Any]  # termios.tcgetattr's list (typeshed: list[Any])
