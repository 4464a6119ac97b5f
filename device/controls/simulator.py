"""The `--simulate` terminal: keys drive the board's MOCK PINS, and the LED state is drawn on one line.

Keys: space presses the main button and the next space releases it (a terminal has no key-up, so a hold is two
taps); `m` presses and releases the mute button; `q` quits. Driving the pins (not emitting events) means the
simulation runs the real debounce, hold, double press and state machine path.

The line: a dot in the LED's current colour (24-bit ANSI colour, animated with the pattern), the state name and,
when failed, the reason. Without a TTY on stdin no keys are read; without a TTY on stdout each new caption is
printed as a plain line instead. The terminal mode is restored on `close` (and the cursor line cleared).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from device.controls.board import Board
from device.controls.leds import Pattern, colour_at
from device.core.dynamic import TermiosAttrs

if TYPE_CHECKING:
    from device.controls.machine import Snapshot

log = logging.getLogger("device.controls.simulator")

HELP = "[space] press / release   [m] mute   [q] quit"


class TerminalView:
    """Draws `● state — reason` on one line; a Board view (told each snapshot and each LED frame)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = _isatty(out)
        self.caption = "idle"
        self._dot = ""
        self._drawn = ""

    def show(self, snapshot: Snapshot) -> None:
        state, reason = snapshot.state, snapshot.reason
        text = str(state)
        if reason is not None:
            text += f" — {reason}: {reason.message}"
        self.set_caption(text)

    def set_caption(self, text: str) -> None:
        self.caption = text
        self._draw()

    def render(self, pattern: Pattern, t: float) -> None:
        r, g, b = colour_at(pattern, t)
        if max(r, g, b) < 0.02:
            self._dot = "\x1b[90m○\x1b[0m"  # dark LED: a grey ring
        else:
            self._dot = f"\x1b[38;2;{_8(r)};{_8(g)};{_8(b)}m●\x1b[0m"
        if self.live:
            self._draw()

    def print_above(self, text: str) -> None:
        """A message on its own line, the status line redrawn under it."""
        if self.live:
            self.out.write("\r\x1b[K" + text + "\n")
            self._drawn = ""
            self._draw()
        else:
            self.out.write(text + "\n")
            self.out.flush()

    def _draw(self) -> None:
        if self.live:
            line = f"{self._dot or '○'} {self.caption}"
            if line != self._drawn:
                self.out.write("\r\x1b[K" + line)
                self.out.flush()
                self._drawn = line
        elif self.caption != self._drawn:
            self.out.write(f"state: {self.caption}\n")
            self.out.flush()
            self._drawn = self.caption

    def close(self) -> None:
        if self.live and self._drawn:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._drawn = ""


class KeyReader:
    """Single keys from a terminal, on the loop (cbreak mode: no echo, no Enter; Ctrl-C still interrupts).

    Does nothing when `stdin` is not a TTY. `close` restores the terminal mode; idempotent.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, stdin: TextIO, on_key: Callable[[str], None]) -> None:
        self.loop = loop
        self.stdin = stdin
        self.on_key = on_key
        self._fd: int | None = None
        self._saved_mode: TermiosAttrs | None = None

    @property
    def active(self) -> bool:
        return self._fd is not None

    def start(self) -> bool:
        if not _isatty(self.stdin):
            return False
        import termios
        import tty

        fd = self.stdin.fileno()
        self._saved_mode = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._fd = fd
        self.loop.add_reader(fd, self._readable)
        return True

    def _readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 64)
        except OSError:
            data = b""
        if not data:  # end of input
            self.close()
            return
        for key in data.decode(errors="ignore"):
            self.on_key(key)

    def close(self) -> None:
        if self._fd is None:
            return
        import termios

        with contextlib.suppress(Exception):
            self.loop.remove_reader(self._fd)
        if self._saved_mode is not None:
            with contextlib.suppress(Exception):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved_mode)
        self._fd, self._saved_mode = None, None


class Simulator:
    """Keyboard → mock pins, board → terminal line. `start()` after the board exists; `close()` always."""

    def __init__(self, board: Board, loop: asyncio.AbstractEventLoop, on_quit: Callable[[], None], *,
                 stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        if not board.simulated:
            raise ValueError("the simulator drives mock pins: build the Board with simulate=True")
        self.board = board
        self.on_quit = on_quit
        self.view = TerminalView(stdout if stdout is not None else sys.stdout)
        self.keys = KeyReader(loop, stdin if stdin is not None else sys.stdin, self.key)
        self.holding = False

    def start(self) -> None:
        self.board.add_view(self.view)
        if self.keys.start():
            self.view.print_above(HELP)
        else:
            log.info("simulator without a terminal: keys are not read")

    def key(self, key: str) -> None:
        """One key, as typed."""
        if key == " ":
            self.holding = not self.holding
            self._drive("main", pressed=self.holding)
        elif key in "mM":
            self._drive("mute", pressed=True)
            self._drive("mute", pressed=False)
        elif key in "qQ":
            self.on_quit()

    def _drive(self, name: str, *, pressed: bool) -> None:
        button = self.board.buttons.get(name)
        if button is None:
            self.view.print_above(f"no {name} button configured")
            return
        # A pulled-up button reads pressed when its pin is low (wired to ground).
        low = pressed == button.config.pull_up
        pin = button.pin
        (pin.drive_low if low else pin.drive_high)()

    def close(self) -> None:
        """Give the terminal back as it was. Idempotent."""
        self.keys.close()
        self.view.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _8(x: float) -> int:
    return max(0, min(255, round(x * 255)))
