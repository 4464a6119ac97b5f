"""A gpiozero Button on mock pins: edges reach the recogniser on the loop thread, with our debounce and timers."""

from __future__ import annotations

import asyncio
import threading

import pytest

from device.config.schema import ButtonConfig
from device.controls.button import ButtonInput
from device.core.vocabulary import DoublePressed, Event, LongPressed, Pressed, Released
from tests.controls.conftest import FakeClock, settle

MAIN = ButtonConfig(pin=17)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.threads: set[int] = set()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.threads.add(threading.get_ident())


@pytest.fixture
async def button(mock_pins, clock: FakeClock):
    made: list[ButtonInput] = []

    def make(config: ButtonConfig = MAIN, name: str = "main") -> tuple[ButtonInput, Recorder]:
        rec = Recorder()
        b = ButtonInput(name, config, asyncio.get_running_loop(), rec, pin_factory=mock_pins)
        made.append(b)
        return b, rec

    yield make
    for b in made:
        b.close()
        assert b.closed


async def test_pressing_and_releasing_a_pulled_up_button(button, clock: FakeClock) -> None:
    b, rec = button()
    b.pin.drive_low()
    await settle()
    assert rec.events == [Pressed("main")]
    await clock.advance(0.2)
    b.pin.drive_high()
    await settle()
    assert rec.events == [Pressed("main"), Released("main")]


async def test_a_button_without_pull_up_is_pressed_when_driven_high(button, clock: FakeClock) -> None:
    b, rec = button(ButtonConfig(pin=22, pull_up=False), name="mute")
    b.pin.drive_high()
    await settle()
    assert rec.events == [Pressed("mute")]


async def test_hundred_bounces_in_fifty_ms_on_the_pin_make_one_press(button, clock: FakeClock) -> None:
    b, rec = button(ButtonConfig(pin=17, bounce_ms=30))
    for i in range(100):
        clock.now += 0.0005
        (b.pin.drive_low if i % 2 == 0 else b.pin.drive_high)()
    b.pin.drive_low()  # contact settles closed
    await settle()
    await clock.advance(0.1)
    assert rec.events == [Pressed("main")]
    assert len(b.pin.states) >= 100  # the chatter really reached the pin
    await clock.advance(0.5)
    b.pin.drive_high()
    await settle()
    assert rec.events == [Pressed("main"), Released("main")]


async def test_holding_fires_a_long_press_from_the_loop_timer(button, clock: FakeClock) -> None:
    b, rec = button(ButtonConfig(pin=17, hold_s=1.5))
    b.pin.drive_low()
    await settle()
    await clock.advance(1.4)
    assert rec.events == [Pressed("main")]
    await clock.advance(0.2)
    assert rec.events == [Pressed("main"), LongPressed("main")]
    b.pin.drive_high()
    await settle()
    assert rec.events[-1] == Released("main")


async def test_double_press_on_the_pins(button, clock: FakeClock) -> None:
    b, rec = button(ButtonConfig(pin=17, double_press_s=0.4))
    for drive in (b.pin.drive_low, b.pin.drive_high, b.pin.drive_low, b.pin.drive_high):
        drive()
        await clock.advance(0.08)
    await clock.advance(1.0)
    assert rec.events == [DoublePressed("main"), Released("main")]


async def test_a_single_press_with_double_press_on_arrives_when_the_window_closes(button, clock: FakeClock) -> None:
    b, rec = button(ButtonConfig(pin=17, double_press_s=0.4))
    b.pin.drive_low()
    await clock.advance(0.1)
    b.pin.drive_high()
    await clock.advance(0.2)
    assert rec.events == []
    await clock.advance(0.2)
    assert rec.events == [Pressed("main"), Released("main")]


async def test_callbacks_from_another_thread_land_on_the_loop_thread(button, clock: FakeClock) -> None:
    b, rec = button()
    loop_thread = threading.get_ident()
    edge_threads: list[int] = []
    original = b._hop

    def spy(pressed: bool, t: float) -> None:
        edge_threads.append(threading.get_ident())
        original(pressed, t)

    b._hop = spy  # type: ignore[method-assign]
    worker = threading.Thread(target=b.pin.drive_low)
    worker.start()
    worker.join(timeout=5)  # the hand-over is queued on the loop before drive_low returns
    await settle()
    assert rec.events == [Pressed("main")]
    assert edge_threads and edge_threads[0] != loop_thread  # gpiozero called us on the worker...
    assert rec.threads == {loop_thread}  # ...and the gesture was recognised and emitted on the loop


async def test_an_edge_after_close_is_dropped(button, clock: FakeClock) -> None:
    b, rec = button()
    pin = b.pin
    b._hop(True, clock.now)
    b.close()
    await settle()
    assert rec.events == []
    assert pin is not None
