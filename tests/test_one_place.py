"""Three rows of the README's "where things go", done: a new LED kind, a new control command and a new status outlet,
each added in one place — a fixture here registers a toy — and driven end to end through what the device already
has (the loader and the board; the cli, the control socket and the daemon; the daemon's status on a change).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from device.audio.stats import AudioStats
from device.cli import main
from device.config import Config, ConfigError, load_config_text
from device.config.led_kinds import LED_KINDS, LedHardware
from device.config.reference import reference_text
from device.controls.board import Board
from device.controls.leds import LED_DRIVERS, LedKind, Pattern, level
from device.controls.machine import initial, transition
from device.controls.timers import LoopTimers
from device.core.vocabulary import MuteRequested
from device.daemon.app import App
from device.daemon.commands import COMMANDS, Command, CommandSpec
from device.daemon.control import ControlServer
from device.daemon.outlets import OUTLETS, StatusChange
from device.session.status import SessionStatus
from tests.daemon.fakeparts import FakeParts
from tests.polling import until

LOCAL = "livekit:\n  token_source: local\n  url: ws://127.0.0.1:7880\n  api_key: k\n  api_secret: s\n"  # lines 1-5


def leds_config(leds: str, button: str = "") -> str:
    return LOCAL + "controls:\n" + button + "  leds:\n" + leds


# ---- an LED kind: one row in each of the two tables, nothing else --------------------------------------------------


class ToyPair:
    """The toy kind's output: two plain LEDs, both lit in the bright half of any pattern."""

    def __init__(self, pins: Sequence[int], pin_factory: object | None) -> None:
        from gpiozero import LED

        self.leds = [LED(pin, pin_factory=pin_factory) for pin in pins]

    def render(self, pattern: Pattern, t: float) -> None:
        for led in self.leds:
            led.value = 1 if pattern.brightness > 0 and level(pattern, t) >= 0.5 else 0

    def close(self) -> None:
        for led in self.leds:
            led.close()


@pytest.fixture
def toy_led_kind(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(LED_KINDS, "toy", LedHardware("toy", pins=("left", "right"), called="the toy pair"))
    monkeypatch.setitem(LED_DRIVERS, "toy", LedKind(lambda config, factory, spi: [ToyPair(config.pins, factory)]))
    return "toy"


def test_a_new_led_kind_is_a_choice_of_the_config_with_its_pin_count_checked(toy_led_kind: str) -> None:
    config = load_config_text(leds_config(f"    kind: {toy_led_kind}\n    pins: [5, 6]\n"))
    assert (config.controls.leds.kind, config.controls.leds.pins) == ("toy", (5, 6))
    assert "one of none, led, pwmled, rgbled, apa102, toy" in reference_text()
    with pytest.raises(ConfigError, match=r"9: controls\.leds\.pins: kind 'toy' needs 2 pin\(s\), got 1"):
        load_config_text(leds_config("    kind: toy\n    pins: [5]\n"))
    with pytest.raises(ConfigError, match=r"GPIO 6 is already used by controls\.leds\.pins"):
        load_config_text(leds_config("    kind: toy\n    pins: [5, 6]\n", button="  button:\n    pin: 6\n"))


async def test_a_new_led_kind_shows_the_state_on_the_board(toy_led_kind: str, mock_pins) -> None:
    config = load_config_text(leds_config(f"    kind: {toy_led_kind}\n    pins: [5, 6]\n"))
    board = Board(config.controls, asyncio.get_running_loop(), lambda event: None, pin_factory=mock_pins)
    try:
        snap = initial("push_to_talk")
        board.show(snap)
        assert [mock_pins.pin(p).state for p in (5, 6)] == [False, False]  # idle: off
        snap, _ = transition(snap, MuteRequested(True), 0.0)
        board.show(snap)
        assert [mock_pins.pin(p).state for p in (5, 6)] == [True, True]  # muted: solid red, lit
    finally:
        board.close()
    assert [mock_pins.pin(p).state for p in (5, 6)] == [False, False]


def test_the_two_kind_tables_still_agree_without_the_toy() -> None:
    assert "toy" not in LED_KINDS and tuple(LED_DRIVERS) == tuple(LED_KINDS)


# ---- a control command: one row in COMMANDS --------------------------------------------------------------------


@pytest.fixture
def toy_command(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(COMMANDS, "hush", CommandSpec("hush", "mute, said softly", event=lambda: MuteRequested(True)))
    return "hush"


class Speaker:
    volume = 0.5


class Audio:
    """The daemon's audio as the event path and the status read it."""

    player = Speaker()
    mic_open = True

    def stats(self) -> AudioStats:
        return AudioStats()

    def mark(self, ms: int) -> int:
        return 0


@dataclass
class Session:
    """The session port: records what the daemon asks of it."""

    asked: list[tuple[str, object]] = field(default_factory=list)

    async def set_muted(self, muted: bool) -> None:
        self.asked.append(("set_muted", muted))

    def status(self) -> SessionStatus:
        return SessionStatus()


@dataclass
class Daemon:
    app: App
    session: Session
    server: ControlServer


@pytest.fixture
async def daemon(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Daemon]:
    """The daemon's event path, effects and control socket in this process, on fakes of its audio and session."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    config = Config()
    app = App(config, "unused.yaml")
    session = Session()
    timers = LoopTimers(asyncio.get_running_loop(), app.feed)
    app.parts = FakeParts(config, Audio(), session, timers)  # type: ignore[assignment]
    worker = asyncio.get_running_loop().create_task(app._run_effects())
    folder = Path(tempfile.mkdtemp(prefix="vd-one-"))
    server = ControlServer(folder / "control.sock", app, app.status.snapshot)
    await server.start()
    try:
        yield Daemon(app, session, server)
    finally:
        await server.close()
        worker.cancel()
        timers.close()
        folder.rmdir()


def ctl(*args: str) -> int:
    """`voice-device ctl ARGS` in this process (where the toy row is), the root logger left as it was."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        return main(["ctl", *args])
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


async def test_a_new_control_command_goes_from_the_cli_through_the_socket_to_the_machine(toy_command: str,
                                                                                        daemon: Daemon) -> None:
    assert await asyncio.to_thread(ctl, toy_command, "--socket", str(daemon.server.path)) == 0
    await until(lambda: daemon.session.asked, "the session to be told")
    assert daemon.session.asked == [("set_muted", True)]
    assert (daemon.app.muted, daemon.app.status.state) == (True, "muted")


async def test_without_the_row_the_command_is_unknown(daemon: Daemon) -> None:
    with pytest.raises(SystemExit):  # argparse: not one of ctl's choices
        ctl("hush", "--socket", str(daemon.server.path))


# ---- a status outlet: one registered factory (and, for a real one, its config section) ----------------------------


class ToyOutlet:
    """Keeps every change it is given."""

    def __init__(self) -> None:
        self.changes: list[StatusChange] = []

    def publish(self, change: StatusChange) -> None:
        self.changes.append(change)

    def close(self) -> None:
        pass


@pytest.fixture
def toy_outlet(monkeypatch: pytest.MonkeyPatch) -> ToyOutlet:
    toy = ToyOutlet()
    monkeypatch.setitem(OUTLETS, "toy", lambda config: toy)
    return toy


async def test_a_new_status_outlet_is_given_the_typed_status_on_each_change_that_matters(
        toy_outlet: ToyOutlet, daemon: Daemon) -> None:  # the outlet first: the daemon is built with it registered
    daemon.app.feed(MuteRequested(True))
    await until(lambda: daemon.session.asked, "the mute to be carried out")
    assert [(c.before.state, c.status.state, c.status.muted, c.status.volume) for c in toy_outlet.changes] == [
        ("idle", "muted", True, 0.5)]
    await daemon.app.handle(Command("volume-up"))  # the button's event; its effect moves the volume
    await until(lambda: len(toy_outlet.changes) > 1, "the volume to reach the outlet")
    change = toy_outlet.changes[-1]
    assert (change.status.state, change.status.volume, change.before.volume, change.state_changed) == (
        "muted", 0.6, 0.5, False)
    daemon.app.feed(MuteRequested(True))  # already muted: nothing moves, nothing is sent
    assert len(toy_outlet.changes) == 2
