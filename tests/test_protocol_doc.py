"""PROTOCOL.md, the device's names (device/core/agent_contract.py) and the companion's
(agent/voice_device_agent/contract.py) say the same: each table's first column, read from the document, is exactly
the set of names both modules declare, and the version in the title is both modules' version."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from device.config.schema import TurnsConfig
from device.core import agent_contract as device
from device.core.modes import MODES
from tests.agent.companion import contract

DOC = Path(__file__).resolve().parents[1] / "PROTOCOL.md"
companion = contract()


def tables(text: str) -> dict[str, list[list[str]]]:
    """Section title → the rows of the first table under it (cells stripped, header and rule dropped)."""
    found: dict[str, list[list[str]]] = {}
    section: str | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif section is not None and line.startswith("|"):
            found.setdefault(section, []).append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif section in found:
            section = None  # its first table has ended
    return {title: rows[2:] for title, rows in found.items()}


def first_column(section: str) -> list[str]:
    rows = tables(DOC.read_text())[section]
    names = [re.fullmatch(r"`([^`]+)`", row[0]) for row in rows]
    assert all(names), f"{section}: every row names one `thing` in its first column"
    return [m.group(1) for m in names if m]


def values(enum: type) -> list[str]:
    return [str(member.value) for member in enum]  # type: ignore[attr-defined]


def test_the_title_is_the_version_both_sides_speak():
    title = DOC.read_text().splitlines()[0]
    assert title == f"# voice-device agent protocol {device.PROTOCOL_VERSION}"
    assert companion.PROTOCOL_VERSION == device.PROTOCOL_VERSION


@pytest.mark.parametrize(("section", "name"), [
    ("Device attributes", "DeviceAttribute"),
    ("Agent attributes", "AgentAttribute"),
    ("Modes", "DeviceMode"),
    ("Methods the device serves", "DeviceMethod"),
    ("Methods a push-to-talk agent serves", "AgentMethod"),
    ("Topics", "Topic"),
])
def test_each_table_names_exactly_what_the_device_and_the_companion_declare(section, name):
    documented = first_column(section)
    assert sorted(documented) == sorted(values(getattr(device, name))), f"PROTOCOL.md vs the device: {section}"
    assert sorted(documented) == sorted(values(getattr(companion, name))), f"PROTOCOL.md vs the companion: {section}"


def test_the_error_codes_and_their_names_agree():
    rows = tables(DOC.read_text())["Errors"]
    documented = {int(row[0].strip("`")): row[1].strip("`") for row in rows}
    assert documented == {int(code): code.name for code in device.RpcErrorCode}
    assert documented == {int(code): code.name for code in companion.RpcErrorCode}


def test_the_modes_are_the_device_s_modes_and_the_turn_methods_its_defaults():
    assert sorted(values(device.DeviceMode)) == sorted(MODES)
    turns = TurnsConfig()
    assert [turns.start_method, turns.end_method, turns.cancel_method] == values(device.AgentMethod)


def test_the_tables_are_read_at_all():
    """The parser finds every section's rows (a table it misses would make the checks above vacuous)."""
    found = tables(DOC.read_text())
    assert len(found["Device attributes"]) == 3 and len(found["Topics"]) == 5 and len(found["Errors"]) == 2
