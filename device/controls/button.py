"""A physical button: a gpiozero `Button` whose edges are handed to the asyncio loop, where the recogniser runs.

Threads: gpiozero calls `when_pressed`/`when_released` on its own threads (lgpio's alert thread on a Pi; the
caller's thread for mock pins). Those callbacks only read the clock and `call_soon_threadsafe` — nothing else is
touched off the loop. The recogniser, its timers and `emit` all run on the loop thread.

We never set gpiozero's `bounce_time` (mock pins ignore it and real ones drop edges we want to see); debounce,
hold and double press are `controls.gestures`' job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from gpiozero import Button

from device.config.schema import ButtonConfig
from device.controls.gestures import GestureRecognizer
from device.core.dynamic import GpioPin
from device.core.vocabulary import Event

log = logging.getLogger("device.controls.button")


class ButtonInput:
    """One button named `name` ("main", "mute", "volume_up", "volume_down") emitting gesture events.

    Edge times come from `loop.time()` (monotonic and stateless, so safe to read on gpiozero's thread) and the
    recogniser's deadlines go to `loop.call_at`: one clock for both, which tests replace on the loop.
    """

    def __init__(self, name: str, config: ButtonConfig, loop: asyncio.AbstractEventLoop,
                 emit: Callable[[Event], None], *, pin_factory: object | None = None) -> None:
        self.name = name
        self.config = config
        self._loop = loop
        self._emit = emit
        self._recogniser = GestureRecognizer.from_config(name, config)
        self._timer: asyncio.TimerHandle | None = None
        self._device = Button(config.pin, pull_up=config.pull_up, bounce_time=None, pin_factory=pin_factory)
        self._device.when_pressed = self._pressed_from_any_thread
        self._device.when_released = self._released_from_any_thread
        log.debug("button ready name=%s pin=%s pull_up=%s", name, config.pin, config.pull_up)

    @property
    def pin(self) -> GpioPin:  # tests and the simulator drive it
        """The gpiozero pin (a MockPin under simulation: the simulator drives it)."""
        return self._device.pin

    @property
    def closed(self) -> bool:
        return bool(self._device.closed)

    # gpiozero's thread: timestamp and hop.
    def _pressed_from_any_thread(self) -> None:
        self._hop(True, self._loop.time())

    def _released_from_any_thread(self) -> None:
        self._hop(False, self._loop.time())

    def _hop(self, pressed: bool, t: float) -> None:
        # A closed loop raises RuntimeError: we are shutting down and the edge means nothing any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._edge, pressed, t)

    # The loop's thread from here on.
    def _edge(self, pressed: bool, t: float) -> None:
        if self.closed:
            return
        self._deliver(self._recogniser.edge(pressed, t))

    def _tick(self) -> None:
        self._timer = None
        if self.closed:
            return
        self._deliver(self._recogniser.tick(self._loop.time()))

    def _deliver(self, gestures: list[Event]) -> None:
        for gesture in gestures:
            log.debug("gesture %s", gesture)
            self._emit(gesture)
        self._rearm()

    def _rearm(self) -> None:
        deadline = self._recogniser.deadline
        if self._timer is not None and (deadline is None or self._timer.when() != deadline):
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._timer is None:
            self._timer = self._loop.call_at(deadline, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._device.close()
