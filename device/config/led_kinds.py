"""The kinds of LED hardware, declared once: what each takes of `controls.leds` — its pins, an SPI bus — and what a
sentence calls it. The schema's choices, the loader's pin checks, the board's bus and its error sentences, and the
drivers' own checks all read this table.

A new kind is one row here and its driver in `device/controls/leds.py` (`LED_DRIVERS`, keyed by the same name;
tests/controls/test_leds.py keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LedHardware:
    """One kind of LED hardware as the configuration knows it."""

    name: str
    pins: tuple[str, ...] | None = ()  # what each of `controls.leds.pins` drives, in order (None: not checked)
    spi: bool = False  # on an SPI bus (`spi_port`, `spi_device`): it drives no GPIO of `controls.leds.pins`
    called: str = ""  # its name in a sentence: "the APA102 ring"

    def pins_problem(self, pins: Sequence[int]) -> str | None:
        """Why `controls.leds.pins` does not fit this kind (the loader's sentence), or None."""
        if self.pins is None or len(pins) == len(self.pins):
            return None
        return f"kind {self.name!r} needs {len(self.pins)} pin(s), got {len(pins)}"

    @property
    def needs(self) -> str:
        """Its pins in words: `exactly one pin`, `three pins (r, g, b)`."""
        pins = self.pins or ()
        if len(pins) == 1:
            return "exactly one pin"
        return f"{_NUMBERS.get(len(pins), str(len(pins)))} pins ({', '.join(pins)})"


_NUMBERS = {0: "no", 2: "two", 3: "three", 4: "four"}


LED_KINDS: dict[str, LedHardware] = {k.name: k for k in (
    LedHardware("none", pins=None),
    LedHardware("led", pins=("led",), called="the LED"),
    LedHardware("pwmled", pins=("led",), called="the LED"),
    LedHardware("rgbled", pins=("r", "g", "b"), called="the RGB LED"),
    LedHardware("apa102", spi=True, called="the APA102 ring"),
)}
