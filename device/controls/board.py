"""The board: the configured buttons and LEDs behind one small interface, real or simulated.

    board = Board(config.controls, loop, emit)      # emit(event) is called on the loop thread only
    board.show(snapshot)                            # after every transition: LEDs follow in the same tick
    board.close()                                   # LEDs off, every device released

Real pins come from gpiozero's default pin factory (lgpio on a Pi); `simulate=True` builds everything on
gpiozero's MockFactory with PWM-capable pins, so `--simulate` runs the very same gesture and LED code. Under
simulation a mute button is added on a spare pin when none is configured, so the simulator's `m` key goes through
the real mute gesture path; an LED kind on SPI (the APA102 ring) writes to memory (bit-banging mock SPI pins would
grow their history without bound).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from device.config.led_kinds import LED_KINDS, LedHardware
from device.config.schema import ButtonConfig, ControlsConfig
from device.controls.button import ButtonInput
from device.controls.leds import LedDriver, Pattern, SpiWriter, open_outputs, pattern_for
from device.core.vocabulary import Event

if TYPE_CHECKING:
    from device.controls.machine import Snapshot

log = logging.getLogger("device.controls.board")

BUTTONS = ("main", "mute", "volume_up", "volume_down")


class BoardError(Exception):
    """The GPIO wiring could not be set up; the message is one sentence saying what to do."""


class View(Protocol):
    """Something else that shows the state (the simulator's terminal line): told the snapshot and each frame."""

    def show(self, snapshot: Snapshot) -> None: ...
    def render(self, pattern: Pattern, t: float) -> None: ...
    def close(self) -> None: ...


class MemorySpi:
    """An SPI bus that keeps what was written (the simulated APA102 ring)."""

    def __init__(self) -> None:
        self.frames: list[list[int]] = []
        self.closed = False

    def write(self, data: list[int]) -> int:
        self.frames = [*self.frames[-1:], list(data)]  # the last two frames are plenty for anyone watching
        return len(data)

    def close(self) -> None:
        self.closed = True


SIMULATED_PIN_HISTORY = 256  # gpiozero's MockPin records every change it ever saw; a simulated device runs for days


def simulated_pin_class() -> type:
    """gpiozero's MockPWMPin keeping only its last changes (`states` is a bounded deque, also after
    `clear_states()`), so LED animations in a long `--simulate` run do not grow the daemon."""
    from collections import deque

    from gpiozero.pins.mock import MockPWMPin

    class SimulatedPin(MockPWMPin):  # type: ignore[misc]  # gpiozero ships no types: its classes are Any
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.states: deque[object] = deque(self.states, maxlen=SIMULATED_PIN_HISTORY)

        def clear_states(self) -> None:
            super().clear_states()
            self.states = deque(self.states, maxlen=SIMULATED_PIN_HISTORY)

    return SimulatedPin


class LedPower:
    """The HAT's LED supply switch (`controls.leds.power_pin`, GPIO5 on ReSpeaker arrays): high while open."""

    def __init__(self, pin: int, pin_factory: object | None) -> None:
        from gpiozero import DigitalOutputDevice

        self.device = DigitalOutputDevice(pin, initial_value=True, pin_factory=pin_factory)

    def close(self) -> None:
        self.device.off()
        self.device.close()


class Board:
    def __init__(self, config: ControlsConfig, loop: asyncio.AbstractEventLoop, emit: Callable[[Event], None], *,
                 simulate: bool = False, pin_factory: object | None = None, spi: SpiWriter | None = None) -> None:
        self.config = config
        self.simulated = simulate
        self._own_factory = None
        if simulate and pin_factory is None:
            from gpiozero.pins.mock import MockFactory

            pin_factory = self._own_factory = MockFactory(pin_class=simulated_pin_class())
        if simulate and spi is None and _spi_kind(config) is not None:
            spi = MemorySpi()
        self.pin_factory = pin_factory
        self.buttons: dict[str, ButtonInput] = {}
        self._views: list[View] = []
        self.leds: LedDriver | None = None
        self.led_power: LedPower | None = None
        try:
            for name, button in self._button_configs(config, simulate).items():
                self.buttons[name] = ButtonInput(name, button, loop, emit, pin_factory=pin_factory)
            if config.leds.power_pin is not None and config.leds.kind != "none":
                self.led_power = LedPower(config.leds.power_pin, pin_factory)
            self.leds = LedDriver(open_outputs(config.leds, pin_factory, spi), loop)
        except Exception as e:
            self.close()
            raise BoardError(_explain(e, config)) from e
        log.info("board ready simulate=%s buttons=%s leds=%s", simulate, ",".join(self.buttons) or "-",
                 config.leds.kind)

    @staticmethod
    def _button_configs(config: ControlsConfig, simulate: bool) -> dict[str, ButtonConfig]:
        found = {
            "main": config.button,
            "mute": config.mute_button,
            "volume_up": config.volume_up_button,
            "volume_down": config.volume_down_button,
        }
        buttons = {name: b for name, b in found.items() if b is not None}
        if simulate and "mute" not in buttons:
            used = {b.pin for b in buttons.values()} | set(config.leds.pins) | {8, 9, 10, 11}  # 8-11: SPI
            used.add(config.leds.power_pin or 8)
            spare = next(p for p in range(4, 28) if p not in used)
            buttons["mute"] = ButtonConfig(pin=spare)
        return buttons

    def add_view(self, view: View) -> None:
        """Attach another display of the state (e.g. the terminal line of the simulator)."""
        self._views.append(view)
        if self.leds is not None:
            self.leds.add(view)

    def show(self, snapshot: Snapshot) -> None:
        """Show the machine's snapshot on the LEDs and views now (same loop tick as the transition)."""
        state, alerting = snapshot.state, snapshot.alerting
        if self.leds is not None:
            self.leds.show(pattern_for(state, alerting=alerting, cue=snapshot.cue))
        for view in self._views:
            view.show(snapshot)

    @property
    def pattern(self) -> Pattern | None:
        return None if self.leds is None else self.leds.pattern

    def close(self) -> None:
        """LEDs off, buttons and LEDs released; safe to call twice."""
        if self.leds is not None:
            self.leds.close()  # closes the views too: they are outputs of the driver
        if self.led_power is not None:
            self.led_power.close()
            self.led_power = None
        for button in self.buttons.values():
            button.close()
        if self._own_factory is not None:
            self._own_factory.close()
            self._own_factory = None


def _explain(e: Exception, config: ControlsConfig) -> str:
    """One sentence for the person wiring the board."""
    from gpiozero.exc import BadPinFactory, GPIOPinInUse, PinInvalidPin, SPIError

    if isinstance(e, BadPinFactory):
        return ("no GPIO driver is available (not a Raspberry Pi, or python3-lgpio is missing): install lgpio, "
                "or try the controls with --simulate")
    if isinstance(e, GPIOPinInUse):
        return f"a GPIO pin is used twice or by another program ({e}); give each button and LED its own pin"
    if isinstance(e, PinInvalidPin):
        return f"a configured pin does not exist on this board ({e}); use BCM GPIO numbers"
    spi = _spi_kind(config)
    if isinstance(e, SPIError) or (spi is not None and isinstance(e, OSError)):
        bus = f"{config.leds.spi_port}.{config.leds.spi_device}"
        return (f"{spi.called if spi else 'the LED'}'s SPI bus {bus} could not be opened ({e}); enable SPI "
                "(raspi-config → Interface Options → SPI) and check controls.leds.spi_*")
    if isinstance(e, ValueError):
        return str(e)
    return f"the buttons and LEDs could not be set up ({type(e).__name__}: {e}); check the controls section"


def _spi_kind(config: ControlsConfig) -> LedHardware | None:
    """The configured LED kind's row (`config/led_kinds.py`) when it is driven over an SPI bus."""
    hardware = LED_KINDS.get(config.leds.kind)
    return hardware if hardware is not None and hardware.spi else None
