"""Status LEDs: one pattern per displayed state (pure), and the outputs that render a pattern on hardware.

`pattern_for(state, alerting=...)` is the whole visual language, chosen to be read at a glance:

| state | pattern |
|---|---|
| idle | off |
| connecting | blue blink, 0.3 s on / 0.3 s off (ring: a blue dot going round) |
| pre-connect-buffering, initializing | solid white (speak now: your words are kept until the agent is there) |
| listening | solid green |
| thinking | blue-violet pulse, 1.2 s (ring: a comet going round) |
| speaking | solid cyan, softer |
| muted | solid red |
| failed | red fast blink 0.1/0.1 s for the alert, then a dim red heartbeat (0.15 s every 2 s) |
| reconnecting | amber slow blink, 1 s / 1 s |

Two cues are laid over the state for a moment (the machine's `cue`, cleared by its timer), never over failed or
muted: `heard` — the wake word was heard: one quick white flash (0.5 s, full brightness; ring: a white comet
going round once), before the blue "connecting" blink; `over` — the conversation ended by itself (the follow-up
window closed): a green fade to off over a second.

Outputs degrade honestly: a plain LED shows colour-less on/off (pulses become a blink at the same period), a PWM
LED shows brightness, an RGB LED colour and brightness, an APA102/DotStar ring the full animation.

`LedDriver` runs the animation on the asyncio loop (no gpiozero background threads: nothing is touched from two
threads). A new pattern is rendered synchronously inside `show`, i.e. in the same loop tick as the state change;
frames follow on `loop.call_at`, 30 per second only while something moves. `close` turns everything off.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from device.config.led_kinds import LED_KINDS
from device.config.schema import LedsConfig
from device.controls.machine import Cue
from device.core.dynamic import GpioPinFactory
from device.core.vocabulary import DeviceState

log = logging.getLogger("device.controls.leds")

FPS = 30.0
RGB = tuple[float, float, float]

WHITE: RGB = (1.0, 1.0, 1.0)
RED: RGB = (1.0, 0.0, 0.0)
GREEN: RGB = (0.0, 1.0, 0.0)
BLUE: RGB = (0.0, 0.2, 1.0)
VIOLET: RGB = (0.45, 0.1, 1.0)
CYAN: RGB = (0.0, 0.8, 1.0)
AMBER: RGB = (1.0, 0.45, 0.0)


class Look(StrEnum):
    OFF = "off"
    SOLID = "solid"
    BLINK = "blink"
    PULSE = "pulse"


class RingMotion(StrEnum):
    """How a ring of pixels shows the pattern: all pixels alike, or a comet going round once per period."""

    FILL = "fill"
    SPIN = "spin"


@dataclass(frozen=True)
class Pattern:
    look: Look = Look.OFF
    colour: RGB = WHITE
    brightness: float = 1.0  # of the configured maximum (`controls.leds.brightness`)
    on_s: float = 0.5  # blink
    off_s: float = 0.5  # blink
    period_s: float = 1.0  # pulse, and one turn of a spinning ring
    ring: RingMotion = RingMotion.FILL


OFF = Pattern()
FAILED_ALERT = Pattern(Look.BLINK, RED, 1.0, on_s=0.1, off_s=0.1)
FAILED_SETTLED = Pattern(Look.BLINK, RED, 0.3, on_s=0.15, off_s=1.85)

PATTERNS: dict[DeviceState, Pattern] = {
    DeviceState.IDLE: OFF,
    DeviceState.CONNECTING: Pattern(Look.BLINK, BLUE, 0.8, on_s=0.3, off_s=0.3, period_s=1.2, ring=RingMotion.SPIN),
    DeviceState.PRECONNECT_BUFFERING: Pattern(Look.SOLID, WHITE, 0.6),
    DeviceState.INITIALIZING: Pattern(Look.SOLID, WHITE, 0.6),
    DeviceState.LISTENING: Pattern(Look.SOLID, GREEN, 1.0),
    DeviceState.THINKING: Pattern(Look.PULSE, VIOLET, 1.0, period_s=1.2, ring=RingMotion.SPIN),
    DeviceState.SPEAKING: Pattern(Look.SOLID, CYAN, 0.6),
    DeviceState.MUTED: Pattern(Look.SOLID, RED, 0.8),
    DeviceState.RECONNECTING: Pattern(Look.BLINK, AMBER, 0.8, on_s=1.0, off_s=1.0),
    DeviceState.FAILED: FAILED_ALERT,
}


# The machine's cues (controls/machine.py `Cue`), by name. A pulse starts at full: `heard` is one flash down and up in
# its 0.5 s; `over`, shown for half its period, is a fade from full to off.
CUES: dict[Cue, Pattern] = {
    Cue.HEARD: Pattern(Look.PULSE, WHITE, 1.0, period_s=0.5, ring=RingMotion.SPIN),
    Cue.OVER: Pattern(Look.PULSE, GREEN, 0.8, period_s=2.0),
}


def pattern_for(state: DeviceState, *, alerting: bool = True, cue: Cue | None = None) -> Pattern:
    """The pattern of a displayed state; `alerting` (a fresh failure) picks the failed fast blink over the dim one;
    `cue` lays a moment's pattern over any state but failed and muted."""
    if state is DeviceState.FAILED and not alerting:
        return FAILED_SETTLED
    if cue is not None and state not in (DeviceState.FAILED, DeviceState.MUTED):
        return CUES[cue]
    return PATTERNS[state]


def level(pattern: Pattern, t: float) -> float:
    """The pattern's envelope at `t` seconds after it started, 0..1 (before brightness and colour)."""
    match pattern.look:
        case Look.OFF:
            return 0.0
        case Look.SOLID:
            return 1.0
        case Look.BLINK:
            return 1.0 if t % (pattern.on_s + pattern.off_s) < pattern.on_s else 0.0
        case Look.PULSE:
            # Starts at full so the change of state is visible in the very first frame.
            return 0.5 + 0.5 * math.cos(2 * math.pi * t / pattern.period_s)
    raise AssertionError(pattern.look)  # pragma: no cover


def next_frame_in(pattern: Pattern, t: float, *, ring: bool = False) -> float | None:
    """Seconds until the rendering can change again (None: it never will). `ring`: a ring is being animated."""
    if pattern.look is Look.PULSE or (ring and pattern.ring is RingMotion.SPIN and pattern.look is not Look.OFF):
        return 1.0 / FPS
    if pattern.look is Look.BLINK:
        cycle = pattern.on_s + pattern.off_s
        phase = t % cycle
        return (pattern.on_s - phase) if phase < pattern.on_s else (cycle - phase)
    return None


def colour_at(pattern: Pattern, t: float, max_brightness: float = 1.0) -> RGB:
    k = level(pattern, t) * pattern.brightness * max_brightness
    r, g, b = pattern.colour
    return (r * k, g * k, b * k)


def ring_pixels(pattern: Pattern, count: int, t: float, max_brightness: float = 1.0) -> list[RGB]:
    """Every pixel's colour at `t`. SPIN: a head going round once per period, its tail fading over a third."""
    if pattern.ring is RingMotion.FILL or pattern.look is Look.OFF:
        return [colour_at(pattern, t, max_brightness)] * count
    head = (t / pattern.period_s % 1.0) * count
    tail = max(1.0, count / 3)
    k = pattern.brightness * max_brightness
    r, g, b = pattern.colour
    pixels = []
    for i in range(count):
        behind = (head - i) % count
        f = max(0.0, 1.0 - behind / tail) * k
        pixels.append((r * f, g * f, b * f))
    return pixels


def apa102_frame(pixels: Sequence[RGB]) -> list[int]:
    """APA102/SK9822 bytes: a 32-bit zero start frame; per pixel 0b111 + 5-bit global brightness (kept at full,
    colour is scaled in 8 bits), then blue, green, red; then a 32-bit zero reset frame (SK9822) and n/2 more
    zero clock bits so data reaches the last pixel. Zeros, not ones, so a longer strip's extra pixels stay dark."""
    out = [0x00] * 4
    for r, g, b in pixels:
        out += [0xE0 | 31, _byte(b), _byte(g), _byte(r)]
    return out + [0x00] * 4 + [0x00] * ((len(pixels) + 15) // 16)


def _byte(x: float) -> int:
    return max(0, min(255, round(x * 255)))


# ---- outputs -----------------------------------------------------------------------------------------------


class LedOutput(Protocol):
    def render(self, pattern: Pattern, t: float) -> None: ...
    def close(self) -> None: ...


class SingleLed:
    """`controls.leds.kind: led` — on/off only: lit in the bright half of any pattern."""

    def __init__(self, pin: int, active_high: bool, pin_factory: object | None = None) -> None:
        from gpiozero import LED

        self.device = LED(pin, active_high=active_high, pin_factory=pin_factory)

    def render(self, pattern: Pattern, t: float) -> None:
        self.device.value = 1 if pattern.brightness > 0 and level(pattern, t) >= 0.5 else 0

    def close(self) -> None:
        self.device.close()


class PwmLed:
    """`kind: pwmled` — one colour, brightness by PWM."""

    def __init__(self, pin: int, active_high: bool, max_brightness: float, pin_factory: object | None = None) -> None:
        from gpiozero import PWMLED

        self.device = PWMLED(pin, active_high=active_high, pin_factory=pin_factory)
        self.max_brightness = max_brightness

    def render(self, pattern: Pattern, t: float) -> None:
        self.device.value = level(pattern, t) * pattern.brightness * self.max_brightness

    def close(self) -> None:
        self.device.close()


class RgbLed:
    """`kind: rgbled` — three PWM pins (red, green, blue)."""

    def __init__(self, pins: Sequence[int], active_high: bool, max_brightness: float,
                 pin_factory: object | None = None) -> None:
        from gpiozero import RGBLED

        red, green, blue = pins
        self.device = RGBLED(red, green, blue, active_high=active_high, pwm=True, pin_factory=pin_factory)
        self.max_brightness = max_brightness

    def render(self, pattern: Pattern, t: float) -> None:
        self.device.value = colour_at(pattern, t, self.max_brightness)

    def close(self) -> None:
        self.device.close()


class SpiWriter(Protocol):
    def write(self, data: list[int]) -> object: ...
    def close(self) -> None: ...


class Apa102Ring:
    """`kind: apa102` — an APA102/DotStar ring (ReSpeaker 2/4-mic HATs, Adafruit Voice Bonnet) on SPI.

    `spi` is gpiozero's SPI interface (`pin_factory.spi(port=, device=)`: spidev/lgpio hardware SPI on a Pi) or
    anything with `write(list[int])`. A frame is written only when its bytes change.
    """

    ring = True  # LedDriver animates SPIN patterns for it

    def __init__(self, spi: SpiWriter, count: int, max_brightness: float) -> None:
        self.spi = spi
        self.count = count
        self.max_brightness = max_brightness
        self._last: list[int] | None = None

    @classmethod
    def open(cls, config: LedsConfig, pin_factory: GpioPinFactory | None = None) -> Apa102Ring:
        from gpiozero import Device

        if pin_factory is None:
            Device.ensure_pin_factory()
            pin_factory = Device.pin_factory
        spi = pin_factory.spi(port=config.spi_port, device=config.spi_device)
        return cls(spi, config.count, config.brightness)

    def render(self, pattern: Pattern, t: float) -> None:
        frame = apa102_frame(ring_pixels(pattern, self.count, t, self.max_brightness))
        if frame != self._last:
            self.spi.write(frame)
            self._last = frame

    def close(self) -> None:
        self.spi.close()


# ---- the drivers: one entry per `controls.leds.kind` -----------------------------------------------------------

Steps = Iterator[tuple[str, Pattern]]


@dataclass(frozen=True)
class LedKind:
    """The driver of one kind of LED hardware: how to open it from `controls.leds`, and what `gpio-test` lights on
    it. What the configuration knows of the kind (its pins, its SPI bus, its name in sentences) is its row in
    `device/config/led_kinds.py`."""

    open: Callable[[LedsConfig, GpioPinFactory | None, SpiWriter | None], list[LedOutput]]
    check: Callable[[LedsConfig], Steps] = lambda leds: iter(())  # gpio-test: each channel alone, named


def _pins(config: LedsConfig) -> tuple[int, ...]:
    """`controls.leds.pins`, as many as the kind's row says (the loader has checked a loaded config already)."""
    hardware = LED_KINDS[config.kind]
    if hardware.pins_problem(config.pins):
        raise ValueError(f"controls.leds.pins: kind {config.kind} needs {hardware.needs}, got {list(config.pins)}")
    return tuple(config.pins)


def _one_led_check(leds: LedsConfig) -> Steps:
    yield f"LED on (GPIO{leds.pins[0] if leds.pins else '?'})", Pattern(Look.SOLID, WHITE)


def _rgb_check(leds: LedsConfig) -> Steps:
    for name, colour, pin in zip(("red", "green", "blue"), (RED, GREEN, BLUE), leds.pins, strict=False):
        yield f"LED {name} (GPIO{pin})", Pattern(Look.SOLID, colour)


def _ring_check(leds: LedsConfig) -> Steps:
    yield f"ring of {leds.count} going round (SPI {leds.spi_port}.{leds.spi_device})", Pattern(
        Look.SOLID, WHITE, period_s=2.0, ring=RingMotion.SPIN)
    for name, colour in (("red", RED), ("green", GREEN), ("blue", BLUE)):
        yield f"ring all {name}", Pattern(Look.SOLID, colour)


def _open_ring(config: LedsConfig, factory: GpioPinFactory | None, spi: SpiWriter | None) -> list[LedOutput]:
    return [Apa102Ring(spi, config.count, config.brightness) if spi is not None else Apa102Ring.open(config, factory)]


# A new LED driver is a `LedOutput` class above and one entry here, under the name of its row in
# `config/led_kinds.py` LED_KINDS (tests/controls/test_leds.py keeps the two tables equal).
LED_DRIVERS: dict[str, LedKind] = {
    "none": LedKind(lambda c, f, s: []),
    "led": LedKind(lambda c, f, s: [SingleLed(_pins(c)[0], c.active_high, f)], check=_one_led_check),
    "pwmled": LedKind(lambda c, f, s: [PwmLed(_pins(c)[0], c.active_high, c.brightness, f)], check=_one_led_check),
    "rgbled": LedKind(lambda c, f, s: [RgbLed(_pins(c), c.active_high, c.brightness, f)], check=_rgb_check),
    "apa102": LedKind(_open_ring, check=_ring_check),
}


def led_kind(config: LedsConfig) -> LedKind:
    kind = LED_DRIVERS.get(config.kind)
    if kind is None:
        raise ValueError(f"controls.leds.kind: unknown kind {config.kind!r}")
    return kind


def open_outputs(config: LedsConfig, pin_factory: GpioPinFactory | None = None,
                 spi: SpiWriter | None = None) -> list[LedOutput]:
    """The outputs `controls.leds` describes (none for kind `none`). `spi` replaces an SPI driver's bus."""
    return led_kind(config).open(config, pin_factory, spi)


class LedDriver:
    """Shows one pattern at a time on every output, animating it on the loop."""

    def __init__(self, outputs: Sequence[LedOutput], loop: asyncio.AbstractEventLoop) -> None:
        self.outputs: list[LedOutput] = list(outputs)
        self._loop = loop
        self.pattern: Pattern = OFF
        self._t0 = loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._render()

    def add(self, output: LedOutput) -> None:
        self.outputs.append(output)
        output.render(self.pattern, self._loop.time() - self._t0)

    def show(self, pattern: Pattern) -> None:
        """Switch pattern now (rendered before returning); the same pattern again keeps its phase."""
        if self._closed or pattern == self.pattern:
            return
        self.pattern, self._t0 = pattern, self._loop.time()
        self._render()

    def _render(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        t = self._loop.time() - self._t0
        for output in list(self.outputs):
            try:
                output.render(self.pattern, t)
            except Exception as e:
                # A failing LED must never take the device down, nor flood the log 30 times a second.
                log.warning("led output disabled output=%s error=%s", type(output).__name__, e)
                self.outputs.remove(output)
                _safely(output.close)
        delay = next_frame_in(self.pattern, t, ring=any(getattr(o, "ring", False) for o in self.outputs))
        if delay is not None:
            self._timer = self._loop.call_at(self._t0 + t + max(delay, 1e-3), self._render)

    def close(self) -> None:
        """LEDs off, devices released. Idempotent."""
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._closed = True
        for output in self.outputs:
            _safely(output.render, OFF, 0.0)
            _safely(output.close)


def _safely(fn: Callable[..., object], *args: object) -> None:
    try:
        fn(*args)
    except Exception as e:
        log.warning("led output failed error=%s", e)
