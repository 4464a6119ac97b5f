"""The control commands, declared once: the socket validates against this table, `voice-device ctl` offers its
names, and the daemon carries out each — the ones that are just an event for the device machine by the table
itself, the others (`say`, the simulated button) by name in `App.handle`.

A new command is one entry here (and, if it is more than an event, one case in `App.handle`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from device.core.dynamic import JSON
from device.core.vocabulary import EndRequested, Event, MuteRequested, Pressed, StartRequested

MAX_SAY_CHARS = 4096


@dataclass(frozen=True)
class CommandSpec:
    name: str
    help: str
    event: Callable[[], Event] | None = None  # the command is this event for the device machine
    takes_text: bool = False  # `say TEXT`
    simulate_only: bool = False  # the daemon must run with --simulate (drives the simulated button)


# The table: one row per command (a dict, so that a test can add a toy one for its duration).
COMMANDS: dict[str, CommandSpec] = {c.name: c for c in (
    CommandSpec("start", "start a session (as a press would)", event=StartRequested),
    CommandSpec("end", "end the session", event=lambda: EndRequested("control")),
    CommandSpec("mute", "mute the microphone (nothing leaves the device)", event=lambda: MuteRequested(True)),
    CommandSpec("unmute", "unmute the microphone", event=lambda: MuteRequested(False)),
    CommandSpec("volume-up", "the speaker a step louder (as the volume-up button)", event=lambda: Pressed("volume_up")),
    CommandSpec("volume-down", "the speaker a step quieter (as the volume-down button)",
                event=lambda: Pressed("volume_down")),
    CommandSpec("say", "send typed text to the agent (lk.chat)", takes_text=True),
    CommandSpec("press", "press the simulated button", simulate_only=True),
    CommandSpec("release", "release the simulated button", simulate_only=True),
)}


class CommandInvalid(ValueError):
    """A command line that is not one of the table's; the message is the sentence the client shows."""


@dataclass(frozen=True)
class Command:
    """A validated command, as the daemon receives it."""

    name: str
    text: str = ""

    @property
    def spec(self) -> CommandSpec:
        return COMMANDS[self.name]

    def to_json(self) -> dict[str, str]:
        return {"cmd": self.name, **({"text": self.text} if self.spec.takes_text else {})}


def names(simulate: bool = True) -> tuple[str, ...]:
    return tuple(n for n, c in COMMANDS.items() if simulate or not c.simulate_only)


def parse(msg: JSON, simulate: bool) -> Command:
    """A decoded JSON line → a `Command`, or CommandInvalid saying what is wrong."""
    if not isinstance(msg, dict):
        raise CommandInvalid('expected a JSON object such as {"cmd": "start"}')
    name = msg.get("cmd")
    if not isinstance(name, str):
        raise CommandInvalid(f'missing "cmd": expected {{"cmd": "start"}} (or {", ".join(names(False)[1:])})')
    spec = COMMANDS.get(name)
    if spec is None or (spec.simulate_only and not simulate):
        if spec is not None:
            raise CommandInvalid(f"{name} is only accepted when the daemon runs with --simulate")
        raise CommandInvalid(f"unknown command {name[:40]!r}; expected one of {', '.join(names(simulate))}")
    if not spec.takes_text:
        return Command(name)
    text = msg.get("text")
    if not isinstance(text, str) or not text.strip():
        raise CommandInvalid(f'{name} needs a non-empty "text" string')
    if len(text) > MAX_SAY_CHARS:
        raise CommandInvalid(f"{name} text is longer than {MAX_SAY_CHARS} characters")
    return Command(name, text)
