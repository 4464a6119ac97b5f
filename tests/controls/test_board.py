"""The board wired to the state machine the way the daemon wires it: mock pins in, effects and LEDs out."""

from __future__ import annotations

import asyncio

import pytest

from device.config.schema import ButtonConfig, ControlsConfig, LedsConfig
from device.controls.board import Board, BoardError, MemorySpi
from device.controls.machine import initial, transition
from device.core.vocabulary import (
    ChangeVolume,
    DeviceState,
    EndSession,
    EndTurn,
    Event,
    PlayEarcon,
    SetMuted,
    StartRequested,
    StartSession,
    StartTurn,
)
from tests.controls.conftest import FakeClock, settle

PINS = {"main": 17, "mute": 27, "volume_up": 23, "volume_down": 24}


class Rig:
    """Board → transition → effects, with board.show after every transition (the daemon's loop, in small)."""

    def __init__(self, mode: str, mock_pins, clock: FakeClock, *, gestures=None, **buttons: ButtonConfig) -> None:
        config = ControlsConfig(**buttons, gestures=gestures or {},
                                leds=LedsConfig(kind="rgbled", pins=(5, 6, 13)))
        self.snap = initial(mode, gestures)
        self.effects: list[object] = []
        self.clock = clock
        self.board = Board(config, asyncio.get_running_loop(), self.feed, pin_factory=mock_pins)

    def feed(self, event: Event) -> None:
        self.snap, fx = transition(self.snap, event, self.clock.now)
        self.effects += fx
        self.board.show(self.snap)

    def pin(self, name: str = "main"):
        return self.board.buttons[name].pin

    async def press(self, name: str = "main", hold: float = 0.1) -> None:
        self.pin(name).drive_low()
        await self.clock.advance(hold, steps=4)
        self.pin(name).drive_high()
        await self.clock.advance(0.05)

    def take(self) -> list[object]:
        out, self.effects = self.effects, []
        return [e for e in out if not isinstance(e, PlayEarcon)]


@pytest.fixture
async def rig(mock_pins, clock):
    made: list[Rig] = []

    def make(mode: str, **kw) -> Rig:
        r = Rig(mode, mock_pins, clock, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.board.close()
        assert all(b.closed for b in r.board.buttons.values())


MAIN = ButtonConfig(pin=17, hold_s=1.0)


async def test_kiosk_hold_to_talk_press_release_then_long_press_ends(rig) -> None:
    r = rig("push_to_talk", button=MAIN)
    r.pin().drive_low()
    await settle()
    assert r.take() == [StartSession(1), StartTurn(1)]
    assert r.board.pattern is not None and r.snap.state is DeviceState.CONNECTING
    await r.clock.advance(0.5)
    r.pin().drive_high()
    await settle()
    assert r.take() == [EndTurn()]
    await r.clock.advance(1.0)
    await r.press(hold=1.2)  # a long press: the turn starts, then the session ends; the release adds nothing
    assert r.take() == [StartTurn(1), EndSession("button")]
    assert r.snap.state is DeviceState.IDLE


async def test_a_double_press_replaces_the_single_press_and_means_its_own_action(rig) -> None:
    r = rig("push_to_talk", button=ButtonConfig(pin=17, double_press_s=0.3), gestures={"double_press": "end_session"})
    await r.press(hold=0.05)
    await r.clock.advance(0.05)
    r.pin().drive_low()
    await settle()
    r.pin().drive_high()
    await r.clock.advance(1.0)
    assert r.take() == []  # a double press in idle: the single press's start was never sent
    await r.press(hold=0.05)
    await r.clock.advance(0.5)
    assert r.take() == [StartSession(1), StartTurn(1), EndTurn()]


async def test_speaker_press_toggles_mute_and_the_led_turns_red_in_the_same_tick(rig, mock_pins) -> None:
    r = rig("always_on", button=MAIN)
    r.feed(StartRequested())  # the daemon starts a speaker's session at boot; the button is then its mute
    r.take()
    r.pin().drive_low()
    await settle()
    assert r.take() == [SetMuted(True)]
    assert tuple(mock_pins.pin(p).state for p in (5, 6, 13)) == (0.4, 0.0, 0.0)
    r.pin().drive_high()
    await r.clock.advance(2.0, steps=4)  # a hold does nothing on a speaker
    await r.press()
    assert r.take() == [SetMuted(False)]


async def test_appliance_press_starts_next_press_ends_and_a_hold_is_just_a_press(rig) -> None:
    r = rig("toggle", button=MAIN)
    await r.press()
    assert r.take() == [StartSession(1)]
    await r.press(hold=2.0)
    assert r.take() == [EndSession("button")]


async def test_mute_and_volume_buttons(rig) -> None:
    r = rig("push_to_talk", button=MAIN, mute_button=ButtonConfig(pin=27),
            volume_up_button=ButtonConfig(pin=23), volume_down_button=ButtonConfig(pin=24))
    await r.press("mute")
    await r.press("volume_up")
    await r.press("volume_down")
    assert r.take() == [SetMuted(True), ChangeVolume(0.1), ChangeVolume(-0.1)]
    assert r.snap.state is DeviceState.MUTED


async def test_simulated_board_builds_its_own_mock_pins_and_a_mute_button(clock) -> None:
    from gpiozero import Device

    config = ControlsConfig(button=MAIN, leds=LedsConfig(kind="apa102", count=4))
    got: list[Event] = []
    board = Board(config, asyncio.get_running_loop(), got.append, simulate=True)
    try:
        assert Device.pin_factory is None or Device.pin_factory is not board.pin_factory  # nothing global changed
        assert set(board.buttons) == {"main", "mute"}
        board.buttons["mute"].pin.drive_low()
        await settle()
        assert [type(e).__name__ for e in got] == ["Pressed"] and got[0].button == "mute"
        spi = board.leds.outputs[0].spi
        assert isinstance(spi, MemorySpi)
    finally:
        board.close()
    assert all(b.closed for b in board.buttons.values())


async def test_simulated_pins_keep_a_bounded_history_so_a_long_simulate_run_does_not_grow(clock) -> None:
    from device.controls.board import SIMULATED_PIN_HISTORY

    config = ControlsConfig(button=MAIN, leds=LedsConfig(kind="rgbled", pins=(5, 6, 13)))
    board = Board(config, asyncio.get_running_loop(), lambda e: None, simulate=True)
    try:
        pin = board.buttons["main"].pin
        for _ in range(SIMULATED_PIN_HISTORY * 2):
            pin.drive_low()
            pin.drive_high()
        assert len(pin.states) == SIMULATED_PIN_HISTORY
        assert pin.states[-1].state is True  # the newest change is the one kept
        pin.clear_states()
        for _ in range(SIMULATED_PIN_HISTORY * 2):
            pin.drive_low()
            pin.drive_high()
        assert len(pin.states) == SIMULATED_PIN_HISTORY
    finally:
        board.close()


async def test_a_pin_used_twice_is_one_sentence(mock_pins, clock) -> None:
    config = ControlsConfig(button=ButtonConfig(pin=5), leds=LedsConfig(kind="led", pins=(5,)))
    with pytest.raises(BoardError, match="used twice"):
        Board(config, asyncio.get_running_loop(), lambda e: None, pin_factory=mock_pins)
    Board(ControlsConfig(button=ButtonConfig(pin=5)), asyncio.get_running_loop(), lambda e: None,
          pin_factory=mock_pins).close()  # the failed board released what it had taken


async def test_wrong_pin_count_is_one_sentence(mock_pins, clock) -> None:
    config = ControlsConfig(leds=LedsConfig(kind="rgbled", pins=(5,)))
    with pytest.raises(BoardError, match="three pins"):
        Board(config, asyncio.get_running_loop(), lambda e: None, pin_factory=mock_pins)


async def test_no_gpio_driver_is_one_sentence_pointing_at_simulate(monkeypatch, clock) -> None:
    from gpiozero import Device

    monkeypatch.setattr(Device, "pin_factory", None)
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    with pytest.warns(Warning), pytest.raises(BoardError, match="--simulate"):
        Board(ControlsConfig(button=MAIN), asyncio.get_running_loop(), lambda e: None)


async def test_the_led_power_pin_is_high_while_the_board_is_open_and_low_after(mock_pins, clock) -> None:
    # ReSpeaker 4-mic/6-mic arrays power their APA102 ring through GPIO5: no power, no light.
    config = ControlsConfig(leds=LedsConfig(kind="apa102", count=12, power_pin=5))
    board = Board(config, asyncio.get_running_loop(), lambda e: None, pin_factory=mock_pins, spi=MemorySpi())
    power = mock_pins.pin(5)
    assert power.state is True or power.state == 1
    board.close()
    assert not power.state
    assert [s.state for s in power.states][-2:] == [True, False]
    Board(config, asyncio.get_running_loop(), lambda e: None, pin_factory=mock_pins, spi=MemorySpi()).close()


async def test_no_leds_no_power_pin_taken(mock_pins, clock) -> None:
    config = ControlsConfig(button=ButtonConfig(pin=5), leds=LedsConfig(kind="none", power_pin=5))
    Board(config, asyncio.get_running_loop(), lambda e: None, pin_factory=mock_pins).close()
