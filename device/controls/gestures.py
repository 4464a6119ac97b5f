"""The gesture recogniser: raw button edges with timestamps → Pressed / Released / LongPressed / DoublePressed.

No clock, no threads, no I/O: every call brings its own time, and `deadline` tells the caller when it must call
`tick` (hold and double-press windows are timers the shell arms). The shell in `controls.button` feeds it on
the asyncio loop only.

Debounce (ours: gpiozero's mock pins ignore `bounce_time`, and real contacts chatter for milliseconds):
- An edge after the line has been quiet for `bounce_s` is taken at once — a press feels instant.
- Any other edge is chatter: the line must then stay at a level for `bounce_s` before that level counts.
So 100 bounces in 50 ms make one press, taken at the first edge; a chatter that ends released makes one release,
`bounce_s` after the last bounce.

Double press (`double_press_s` > 0): a second press within `double_press_s` of the first press is a
DoublePressed, and the two gestures exclude each other — a double press never also fires the single press's
action (a toggle would otherwise flicker on and off). The price is latency: the first press is reported only
when the window closes, or at once with the second press as DoublePressed. A press still held when the window
closes is reported then (so hold-to-talk keeps working, late by the window; the audio pre-roll, 500 ms by
default, covers windows up to that length). With double press off (the default) nothing is delayed.

A long press is reported once, `hold_s` after the press while the button is still down; its release still
reports Released.
"""

from __future__ import annotations

from dataclasses import dataclass

from device.config.schema import ButtonConfig
from device.core.vocabulary import DoublePressed, Event, LongPressed, Pressed, Released


@dataclass
class _Pending:
    """A first press held back while a double press may still come."""

    at: float
    released: bool = False


class GestureRecognizer:
    def __init__(self, button: str = "main", *, bounce_s: float = 0.03, hold_s: float = 1.0,
                 double_press_s: float = 0.0) -> None:
        self.button = button
        self.bounce_s = bounce_s
        self.hold_s = hold_s
        self.double_press_s = double_press_s
        self._raw = False  # the line as last seen
        self._last_edge = float("-inf")
        self._level = False  # the debounced level
        self._settle_at: float | None = None  # chatter: when the raw level will count
        self._hold_at: float | None = None  # when to report LongPressed (the button is down)
        self._pending: _Pending | None = None

    @classmethod
    def from_config(cls, button: str, config: ButtonConfig) -> GestureRecognizer:
        return cls(button, bounce_s=config.bounce_ms / 1000.0, hold_s=config.hold_s,
                   double_press_s=config.double_press_s)

    @property
    def is_pressed(self) -> bool:
        """The debounced level."""
        return self._level

    @property
    def deadline(self) -> float | None:
        """The next time `tick` must be called, or None when nothing is waiting."""
        times = [t for t in (self._settle_at, self._hold_at,
                             None if self._pending is None else self._pending.at + self.double_press_s)
                 if t is not None]
        return min(times) if times else None

    def edge(self, pressed: bool, t: float) -> list[Event]:
        """A raw edge of the line (True = the button went down) at time `t`."""
        out = self.tick(t)
        if pressed == self._raw:
            return out  # a repeated level (a callback coalesced by the driver): not an edge
        quiet = t - self._last_edge >= self.bounce_s
        self._raw, self._last_edge = pressed, t
        if quiet and self._settle_at is None and pressed != self._level:
            out += self._accept(pressed, t)
        else:
            self._settle_at = t + self.bounce_s
        return out

    def tick(self, t: float) -> list[Event]:
        """Report whatever has become due by `t` (call at `deadline`; calling early or late is harmless)."""
        out: list[Event] = []
        while (due := self.deadline) is not None and due <= t:
            if self._settle_at is not None and self._settle_at == due:
                self._settle_at = None
                if self._raw != self._level:
                    out += self._accept(self._raw, due)
            elif self._pending is not None and self._pending.at + self.double_press_s == due:
                out += self._flush_pending()
            elif self._hold_at == due:
                self._hold_at = None
                out += self._flush_pending()
                out.append(LongPressed(self.button))
        return out

    def _accept(self, pressed: bool, t: float) -> list[Event]:
        self._level = pressed
        return self._down(t) if pressed else self._up(t)

    def _down(self, t: float) -> list[Event]:
        self._hold_at = t + self.hold_s
        if self.double_press_s <= 0:
            return [Pressed(self.button)]
        if self._pending is not None and t - self._pending.at <= self.double_press_s:
            self._pending = None  # the first press is swallowed: the two make one gesture
            return [DoublePressed(self.button)]
        self._pending = _Pending(t)
        return []

    def _up(self, t: float) -> list[Event]:
        self._hold_at = None
        if self._pending is not None and not self._pending.released:
            self._pending.released = True  # reported with its press when the window closes
            return []
        return [Released(self.button)]

    def _flush_pending(self) -> list[Event]:
        if self._pending is None:
            return []
        pending, self._pending = self._pending, None
        return [Pressed(self.button), Released(self.button)] if pending.released else [Pressed(self.button)]
