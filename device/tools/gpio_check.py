"""`voice-device gpio-test`: check the wiring. Each LED (each colour of an RGB LED) lights in turn, then every
state's pattern is shown by name; each button gesture is printed as it is recognised. Ends on q or Ctrl-C.

With `simulate=True` the board is built on mock pins and the simulator's keys drive them, so the same check runs
on a laptop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from device.config.schema import ControlsConfig
from device.controls.board import Board, BoardError
from device.controls.leds import CUES, Pattern, led_kind, pattern_for
from device.core.vocabulary import DeviceState, Event

if TYPE_CHECKING:
    from device.controls.simulator import TerminalView

STEP_S = 1.0


def walk(config: ControlsConfig) -> Iterator[tuple[str, Pattern]]:
    """The LED check, one step at a time: each channel alone, then each state's pattern."""
    yield from led_kind(config.leds).check(config.leds)
    for state in DeviceState:
        yield f"pattern for {state}", pattern_for(state)
    yield f"pattern for {DeviceState.FAILED} after the alert", pattern_for(DeviceState.FAILED, alerting=False)
    for cue, pattern in CUES.items():
        yield f"cue {cue}", pattern


async def run_gpio_test(config: ControlsConfig, *, simulate: bool, stdout: TextIO | None = None) -> int:
    out = stdout if stdout is not None else sys.stdout
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    printer = _Printer(out)

    def gesture(event: Event) -> None:
        button = getattr(event, "button", "?")
        printer(f"button {button}: {type(event).__name__}")

    try:
        board = Board(config, loop, gesture, simulate=simulate)
    except BoardError as e:
        print(f"voice-device: {e}", file=sys.stderr)
        return 1
    simulator = None
    keys = None
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, done.set)
    try:
        if simulate:
            from device.controls.simulator import Simulator

            simulator = Simulator(board, loop, done.set, stdout=out)
            simulator.start()
            printer.view = simulator.view
        else:
            from device.controls.simulator import KeyReader

            keys = KeyReader(loop, sys.stdin, lambda key: done.set() if key in "qQ" else None)
            keys.start()
            buttons = ", ".join(f"{n}=GPIO{b.config.pin}" for n, b in board.buttons.items()) or "none"
            printer(f"buttons: {buttons}; LEDs: {config.leds.kind}; q or Ctrl-C ends")
        if not board.buttons:
            printer("no button configured (controls.button)")
        leds = board.leds
        steps = list(walk(config)) if leds is not None and leds.outputs else []
        while leds is not None and steps and not done.is_set():
            for label, pattern in steps:
                printer.step(label)
                leds.show(pattern)
                if await _wait(done, STEP_S * (3 if label.startswith("pattern") else 1)):
                    break
        await done.wait()  # no LEDs to walk: print gestures until asked to stop
    finally:
        if keys is not None:
            keys.close()
        if simulator is not None:
            simulator.close()
        board.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    return 0


async def _wait(done: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; True when asked to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), seconds)
    return done.is_set()


class _Printer:
    """Prints lines; under the simulator, above its status line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.view: TerminalView | None = None

    def __call__(self, text: str) -> None:
        if self.view is not None:
            self.view.print_above(text)
        else:
            self.out.write(text + "\n")
            self.out.flush()

    def step(self, label: str) -> None:
        if self.view is not None:
            self.view.set_caption(label)
        else:
            self(label)
