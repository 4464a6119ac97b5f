"""The --simulate terminal: keys drive the mock pins through the real gesture path; the LED line is drawn."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from device.config.schema import ButtonConfig, ControlsConfig, LedsConfig
from device.controls.board import Board
from device.controls.machine import Failed, Snapshot, initial
from device.controls.simulator import Simulator, TerminalView
from device.core.vocabulary import DeviceState, Event, FailureReason, Pressed, Released
from tests.controls.conftest import FakeClock, settle

ROOT = Path(__file__).resolve().parents[2]
LIVEKIT = "livekit:\n  token_source: literal\n  url: ws://127.0.0.1:7880\n  token: abc\n"


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
async def sim(clock: FakeClock):
    got: list[Event] = []
    quits: list[bool] = []
    out = FakeTty()
    config = ControlsConfig(button=ButtonConfig(pin=17), leds=LedsConfig(kind="rgbled", pins=(5, 6, 13)))
    board = Board(config, asyncio.get_running_loop(), got.append, simulate=True)
    simulator = Simulator(board, asyncio.get_running_loop(), lambda: quits.append(True),
                          stdin=io.StringIO(""), stdout=out)
    simulator.start()
    yield simulator, got, quits, out
    simulator.close()
    board.close()
    assert all(b.closed for b in board.buttons.values())


async def test_space_presses_and_the_next_space_releases_so_a_hold_is_possible(sim, clock) -> None:
    simulator, got, _, _ = sim
    simulator.key(" ")
    await clock.advance(0.5)
    assert got == [Pressed("main")]
    simulator.key(" ")
    await settle()
    assert got == [Pressed("main"), Released("main")]


async def test_holding_space_long_enough_is_a_long_press(sim, clock) -> None:
    simulator, got, _, _ = sim
    simulator.key(" ")
    await clock.advance(1.2, steps=3)
    assert [type(e).__name__ for e in got] == ["Pressed", "LongPressed"]


async def test_m_goes_through_the_mute_button_and_q_quits(sim, clock) -> None:
    simulator, got, quits, _ = sim
    simulator.key("m")
    await clock.advance(0.1)
    assert got == [Pressed("mute"), Released("mute")]
    simulator.key("q")
    assert quits == [True]


async def test_the_line_shows_a_coloured_dot_the_state_and_the_reason(sim, clock) -> None:
    simulator, _, _, out = sim
    base = initial("push_to_talk")
    simulator.board.show(Snapshot(base.profile, Failed(FailureReason.UNREACHABLE), alerting=True))
    line = out.getvalue().rsplit("\r\x1b[K", 1)[-1]
    assert "\x1b[38;2;255;0;0m●" in line  # red, the first frame of the fast blink
    assert "failed — unreachable: The LiveKit server" in line
    assert "\n" not in line


def test_without_a_terminal_each_state_is_printed_once_as_a_plain_line() -> None:
    out = io.StringIO()
    view = TerminalView(out)
    base = initial("toggle")
    view.show(base)
    view.show(base)
    assert out.getvalue() == "state: idle\n"
    assert "\x1b" not in out.getvalue()


def test_the_simulator_refuses_a_real_board() -> None:
    class Real:
        simulated = False

    with pytest.raises(ValueError, match="simulate=True"):
        Simulator(Real(), None, lambda: None)  # type: ignore[arg-type]


def _read_until(fd: int, needle: bytes, timeout: float = 20.0) -> bytes:
    seen = b""
    end = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def test_gpio_test_simulate_in_a_terminal_reads_keys_and_restores_the_terminal(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    config = tmp_path / "c.yaml"
    config.write_text(LIVEKIT + "controls:\n  button:\n    pin: 17\n  leds:\n    kind: pwmled\n    pins: [18]\n")
    proc = subprocess.Popen([sys.executable, "-m", "device", "gpio-test", "--simulate", "--config", str(config)],
                            cwd=ROOT, stdin=slave, stdout=slave, stderr=subprocess.DEVNULL, close_fds=True)
    try:
        assert b"[space]" in _read_until(master, b"[space]")
        os.write(master, b" ")
        assert b"button main: Pressed" in _read_until(master, b"button main: Pressed")
        os.write(master, b" ")
        assert b"button main: Released" in _read_until(master, b"button main: Released")
        os.write(master, b"q")
        assert proc.wait(timeout=20) == 0
        assert termios.tcgetattr(slave) == before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        os.close(master)
        os.close(slave)


def test_gpio_test_with_an_unwired_board_says_what_to_do(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(LIVEKIT + "controls:\n  button:\n    pin: 17\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPIOZERO_")}
    r = subprocess.run([sys.executable, "-m", "device", "gpio-test", "--config", str(config)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=env)
    assert r.returncode == 1
    assert "--simulate" in r.stderr and "Traceback" not in r.stderr


def test_state_names_in_the_view_are_the_device_states() -> None:
    out = io.StringIO()
    view = TerminalView(out)
    snap = initial("always_on")
    view.show(Snapshot(snap.profile, muted=True))
    assert out.getvalue() == f"state: {DeviceState.MUTED}\n"
