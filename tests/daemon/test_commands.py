"""The control commands are declared once: the socket, the CLI and the daemon all take them from one table."""

from __future__ import annotations

import pytest

from device.cli import build_parser
from device.daemon.commands import COMMANDS, Command, CommandInvalid, names, parse


def test_ctl_offers_exactly_the_tables_commands() -> None:
    ctl = build_parser()._subparsers._group_actions[0].choices["ctl"]  # type: ignore[union-attr]
    action = next(a for a in ctl._actions if a.dest == "action")
    assert tuple(action.choices) == tuple(COMMANDS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_reads_back_as_itself(name: str) -> None:
    cmd = Command(name, "hello" if COMMANDS[name].takes_text else "")
    assert parse(cmd.to_json(), simulate=True) == cmd


def test_simulate_only_commands_are_refused_and_not_offered_without_simulate() -> None:
    assert "press" not in names(simulate=False)
    with pytest.raises(CommandInvalid, match="--simulate"):
        parse({"cmd": "press"}, simulate=False)


def test_commands_that_are_events_make_the_event_of_the_machine() -> None:
    from device.core.vocabulary import EndRequested, MuteRequested, Pressed, StartRequested

    made = {name: spec.event() for name, spec in COMMANDS.items() if spec.event is not None}
    assert made == {"start": StartRequested(), "end": EndRequested("control"), "mute": MuteRequested(True),
                    "unmute": MuteRequested(False), "volume-up": Pressed("volume_up"),
                    "volume-down": Pressed("volume_down")}
