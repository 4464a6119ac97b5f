"""LED patterns per state, their rendering on mock pins, and the APA102 bytes on the wire."""

from __future__ import annotations

import asyncio

import pytest

from device.config.schema import ControlsConfig, LedsConfig
from device.controls.board import Board
from device.controls.leds import (
    CUES,
    FAILED_ALERT,
    FAILED_SETTLED,
    GREEN,
    OFF,
    RED,
    WHITE,
    Apa102Ring,
    LedDriver,
    Look,
    Pattern,
    RingMotion,
    apa102_frame,
    level,
    next_frame_in,
    pattern_for,
    ring_pixels,
)
from device.controls.machine import (
    AGENT_STATES,
    CUE_S,
    CUE_TIMER,
    Connecting,
    Cue,
    Failed,
    Reconnecting,
    Snapshot,
    Up,
    initial,
    transition,
)
from device.core.vocabulary import DeviceState, FailureReason, SessionFailed, TimerFired, WakeWordHeard
from tests.controls.conftest import FakeClock


class FakeSpi:
    def __init__(self) -> None:
        self.writes: list[list[int]] = []
        self.closed = False

    def write(self, data: list[int]) -> int:
        self.writes.append(list(data))
        return len(data)

    def close(self) -> None:
        self.closed = True


def snapshot(state: DeviceState, *, alerting: bool = True) -> Snapshot:
    """A snapshot that displays `state`."""
    base = initial("push_to_talk")
    agent = {v: v for v in AGENT_STATES.values()}
    match state:
        case DeviceState.IDLE:
            return base
        case DeviceState.CONNECTING:
            return Snapshot(base.profile, Connecting())
        case DeviceState.PRECONNECT_BUFFERING:
            return Snapshot(base.profile, Up())
        case DeviceState.MUTED:
            return Snapshot(base.profile, Up(DeviceState.LISTENING), muted=True)
        case DeviceState.RECONNECTING:
            return Snapshot(base.profile, Reconnecting())
        case DeviceState.FAILED:
            return Snapshot(base.profile, Failed(FailureReason.UNREACHABLE), alerting=alerting)
    return Snapshot(base.profile, Up(agent[state]))


@pytest.mark.parametrize("state", list(DeviceState))
def test_snapshot_helper_shows_each_state(state: DeviceState) -> None:
    assert snapshot(state).state is state


# ---- the visual language -----------------------------------------------------------------------------------


def test_every_state_has_a_pattern_a_person_reads_at_a_glance() -> None:
    p = {s: pattern_for(s) for s in DeviceState}
    assert p[DeviceState.IDLE].look is Look.OFF
    assert p[DeviceState.CONNECTING].look is Look.BLINK
    assert p[DeviceState.PRECONNECT_BUFFERING].look is Look.SOLID
    assert p[DeviceState.LISTENING] == Pattern(Look.SOLID, GREEN, 1.0)
    assert p[DeviceState.THINKING].look is Look.PULSE
    speaking, listening = p[DeviceState.SPEAKING], p[DeviceState.LISTENING]
    assert speaking.colour != listening.colour and speaking.brightness < listening.brightness
    assert p[DeviceState.MUTED].look is Look.SOLID and p[DeviceState.MUTED].colour == RED
    assert p[DeviceState.RECONNECTING].look is Look.BLINK
    reconnecting, connecting = p[DeviceState.RECONNECTING], p[DeviceState.CONNECTING]
    assert reconnecting.on_s + reconnecting.off_s > connecting.on_s + connecting.off_s  # slow blink


def test_failed_fast_blinks_while_alerting_then_dims() -> None:
    assert pattern_for(DeviceState.FAILED, alerting=True) == FAILED_ALERT
    assert pattern_for(DeviceState.FAILED, alerting=False) == FAILED_SETTLED
    assert FAILED_ALERT.on_s + FAILED_ALERT.off_s <= 0.25
    assert FAILED_SETTLED.brightness < FAILED_ALERT.brightness and FAILED_SETTLED.colour == RED


def test_the_cues_are_brief_distinct_and_never_hide_a_failure_or_mute() -> None:
    assert set(CUES) == set(Cue)
    heard, over = CUES[Cue.HEARD], CUES[Cue.OVER]
    for state in (DeviceState.IDLE, DeviceState.CONNECTING, DeviceState.SPEAKING):
        assert pattern_for(state, cue=Cue.HEARD) == heard and pattern_for(state, cue=Cue.OVER) == over
    for state in (DeviceState.FAILED, DeviceState.MUTED):
        assert pattern_for(state, cue=Cue.HEARD) == pattern_for(state)
    # "heard you": one full-brightness white flash inside its cue time, unlike any state's pattern
    assert heard.period_s <= CUE_S[Cue.HEARD] and heard.brightness == 1.0 and heard.colour == WHITE
    assert heard not in {pattern_for(s) for s in DeviceState}
    # "over": shown for half its period, i.e. a fade from full to off
    assert CUE_S[Cue.OVER] == pytest.approx(over.period_s / 2)
    assert level(over, 0.0) == 1.0 and level(over, CUE_S[Cue.OVER]) == pytest.approx(0.0)


def test_the_board_shows_the_machines_cue_until_its_timer_clears_it(mock_pins) -> None:
    loop = asyncio.new_event_loop()
    try:
        board = Board(ControlsConfig(leds=LedsConfig(kind="rgbled", pins=[5, 6, 13])), loop, lambda e: None,
                      pin_factory=mock_pins)
        snap, _ = transition(initial("wake_word"), WakeWordHeard("okay_nabu", 0.9, mark=0, phrase_end=0), 0.0)
        board.show(snap)
        assert board.pattern == CUES[Cue.HEARD]
        snap, _ = transition(snap, TimerFired(CUE_TIMER), 0.5)
        board.show(snap)
        assert board.pattern == pattern_for(DeviceState.CONNECTING)
        board.close()
    finally:
        loop.close()


def test_blink_envelope_and_its_next_edge() -> None:
    blink = Pattern(Look.BLINK, on_s=0.3, off_s=0.7)
    assert [level(blink, t) for t in (0.0, 0.29, 0.31, 0.99, 1.0)] == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert next_frame_in(blink, 0.1) == pytest.approx(0.2)
    assert next_frame_in(blink, 0.5) == pytest.approx(0.5)
    assert next_frame_in(Pattern(Look.SOLID), 0.0) is None and next_frame_in(OFF, 3.0) is None


def test_pulse_starts_bright_and_breathes_over_its_period() -> None:
    pulse = Pattern(Look.PULSE, period_s=2.0)
    assert level(pulse, 0.0) == 1.0 and level(pulse, 1.0) == pytest.approx(0.0) and level(pulse, 2.0) == 1.0
    assert 0.0 < level(pulse, 0.5) < 1.0


# ---- the pins, state by state ------------------------------------------------------------------------------

RGB_PINS = (5, 6, 13)


@pytest.fixture
async def board(mock_pins, clock: FakeClock):
    made: list[Board] = []

    def make(leds: LedsConfig) -> Board:
        b = Board(ControlsConfig(leds=leds), asyncio.get_running_loop(), lambda e: None, pin_factory=mock_pins)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def rgb(mock_pins) -> tuple[float, float, float]:
    return tuple(round(mock_pins.pin(p).state, 3) for p in RGB_PINS)  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (DeviceState.IDLE, (0.0, 0.0, 0.0)),
        (DeviceState.LISTENING, (0.0, 0.5, 0.0)),  # green at the configured maximum brightness (0.5)
        (DeviceState.MUTED, (0.4, 0.0, 0.0)),
        (DeviceState.SPEAKING, (0.0, 0.24, 0.3)),
        (DeviceState.PRECONNECT_BUFFERING, (0.3, 0.3, 0.3)),
        (DeviceState.FAILED, (0.5, 0.0, 0.0)),  # first frame of the fast blink: on
        (DeviceState.CONNECTING, (0.0, 0.08, 0.4)),
    ],
)
async def test_rgb_led_pins_per_state_change_in_the_same_tick(board, mock_pins, state, expected) -> None:
    b = board(LedsConfig(kind="rgbled", pins=RGB_PINS, brightness=0.5))
    b.show(snapshot(state))  # no await: the pins must already show it
    assert rgb(mock_pins) == expected


async def test_rgb_led_with_common_anode_inverts_the_pins(board, mock_pins) -> None:
    b = board(LedsConfig(kind="rgbled", pins=RGB_PINS, brightness=1.0, active_high=False))
    b.show(snapshot(DeviceState.LISTENING))
    assert rgb(mock_pins) == (1.0, 0.0, 1.0)


async def test_connecting_blinks_on_the_loop_clock(board, mock_pins, clock: FakeClock) -> None:
    b = board(LedsConfig(kind="led", pins=(18,)))
    pin = mock_pins.pin(18)
    b.show(snapshot(DeviceState.CONNECTING))
    seen = [pin.state]
    await clock.advance(0.15)  # sample mid-phase, away from the edges
    for _ in range(6):
        await clock.advance(0.3)
        seen.append(pin.state)
    assert seen == [1, 0, 1, 0, 1, 0, 1]
    assert len(pin.states) == 1 + 6 + 1  # initial low, then exactly one change per edge: no frames in between


async def test_thinking_pulses_the_pwm_value_between_dark_and_the_maximum(board, mock_pins, clock) -> None:
    b = board(LedsConfig(kind="pwmled", pins=(18,), brightness=0.8))
    pin = mock_pins.pin(18)
    b.show(snapshot(DeviceState.THINKING))
    samples = [pin.state]
    for _ in range(36):  # one 1.2 s period sampled at 30 frames per second
        await clock.advance(1 / 30)
        samples.append(pin.state)
    assert max(samples) == pytest.approx(0.8)
    assert min(samples) < 0.01
    assert len({round(s, 2) for s in samples}) > 10  # a smooth pulse, not a blink
    assert len(pin.states) > 30


async def test_failed_alert_blinks_fast_then_the_dim_heartbeat_follows(board, mock_pins, clock) -> None:
    b = board(LedsConfig(kind="pwmled", pins=(18,), brightness=1.0))
    pin = mock_pins.pin(18)
    snap = snapshot(DeviceState.CONNECTING)
    snap, _ = transition(snap, SessionFailed(FailureReason.UNREACHABLE), clock.now)
    b.show(snap)
    assert pin.state == 1.0
    await clock.advance(0.1)
    assert pin.state == 0.0
    snap = Snapshot(snap.profile, snap.link, alerting=False)
    b.show(snap)
    assert pin.state == pytest.approx(0.3)
    await clock.advance(0.2)
    assert pin.state == 0.0


async def test_the_same_pattern_again_keeps_its_phase(board, mock_pins, clock) -> None:
    b = board(LedsConfig(kind="led", pins=(18,)))
    pin = mock_pins.pin(18)
    b.show(snapshot(DeviceState.RECONNECTING))
    await clock.advance(1.2)
    assert pin.state == 0
    b.show(snapshot(DeviceState.RECONNECTING))
    assert pin.state == 0


async def test_close_turns_the_leds_off_and_releases_the_pins(mock_pins, clock) -> None:
    b = Board(ControlsConfig(leds=LedsConfig(kind="rgbled", pins=RGB_PINS)), asyncio.get_running_loop(),
              lambda e: None, pin_factory=mock_pins)
    b.show(snapshot(DeviceState.LISTENING))
    assert rgb(mock_pins) != (0.0, 0.0, 0.0)
    b.close()
    assert rgb(mock_pins) == (0.0, 0.0, 0.0)
    b.close()  # twice is fine
    again = Board(ControlsConfig(leds=LedsConfig(kind="rgbled", pins=RGB_PINS)), asyncio.get_running_loop(),
                  lambda e: None, pin_factory=mock_pins)  # the pins are free again
    again.close()


async def test_a_failing_led_is_dropped_once_and_never_raises(clock, caplog) -> None:
    class Broken:
        calls = 0

        def render(self, pattern, t):
            Broken.calls += 1
            raise OSError("gone")

        def close(self):
            pass

    driver = LedDriver([Broken()], asyncio.get_running_loop())
    driver.show(pattern_for(DeviceState.THINKING))
    await clock.advance(1.0, steps=10)
    assert Broken.calls == 1 and driver.outputs == []
    assert "led output disabled" in caplog.text
    driver.close()


# ---- APA102 ------------------------------------------------------------------------------------------------


def test_apa102_frame_is_start_pixels_in_bgr_then_zero_end_frames() -> None:
    frame = apa102_frame([(1.0, 0.0, 0.0), (0.0, 0.5, 1.0)])
    assert frame == [0, 0, 0, 0, 0xFF, 0, 0, 255, 0xFF, 255, 128, 0, 0, 0, 0, 0, 0]
    assert len(apa102_frame([(0.0, 0.0, 0.0)] * 32)) == 4 + 32 * 4 + 4 + 2


def test_ring_writes_only_when_the_bytes_change() -> None:
    spi = FakeSpi()
    ring = Apa102Ring(spi, count=12, max_brightness=0.5)
    ring.render(pattern_for(DeviceState.LISTENING), 0.0)
    ring.render(pattern_for(DeviceState.LISTENING), 5.0)
    assert len(spi.writes) == 1
    pixels = spi.writes[0][4:4 + 12 * 4]
    assert pixels == [0xFF, 0, 128, 0] * 12  # green at half brightness on every pixel
    ring.close()
    assert spi.closed


def test_spinning_ring_moves_its_head_round_once_per_period() -> None:
    spin = Pattern(Look.SOLID, RED, 1.0, period_s=1.2, ring=RingMotion.SPIN)
    heads = []
    for step in range(12):
        pixels = ring_pixels(spin, 12, step * 0.1)
        heads.append(max(range(12), key=lambda i: pixels[i][0]))
    assert heads == list(range(12))
    assert sum(1 for p in ring_pixels(spin, 12, 0.0) if p[0] > 0) == 4  # a comet a third of the ring long


async def test_ring_on_the_board_animates_thinking_and_goes_dark_on_close(mock_pins, clock) -> None:
    spi = FakeSpi()
    b = Board(ControlsConfig(leds=LedsConfig(kind="apa102", count=12, brightness=0.4)), asyncio.get_running_loop(),
              lambda e: None, pin_factory=mock_pins, spi=spi)
    b.show(snapshot(DeviceState.THINKING))
    await clock.advance(0.5, steps=15)
    assert len(spi.writes) >= 10 and len({tuple(w) for w in spi.writes}) >= 10
    b.close()
    assert spi.writes[-1][4:4 + 48] == [0xFF, 0, 0, 0] * 12 and spi.closed


def test_ring_through_gpiozero_spi_layer_puts_the_frame_on_the_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real path: gpiozero's SPI interface for port 0 device 0 (software SPI over mock pins here)."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockSPIDevice

    factory = MockFactory()  # plain mock pins: the SPI clock pin must not be a PWM pin
    # Building gpiozero's software SPI consults Device.pin_factory even when given one (BadPinFactory here without).
    monkeypatch.setattr(Device, "pin_factory", factory)
    try:
        with MockSPIDevice(clock_pin=11, mosi_pin=10, select_pin=8, pin_factory=factory) as wire:
            ring = Apa102Ring.open(LedsConfig(kind="apa102", count=2, brightness=1.0), pin_factory=factory)
            try:
                ring.render(Pattern(Look.SOLID, (1.0, 0.0, 0.0)), 0.0)
                bits = wire.rx_buf
                sent = [int("".join("1" if b else "0" for b in bits[i:i + 8]), 2) for i in range(0, len(bits), 8)]
                assert sent == apa102_frame([(1.0, 0.0, 0.0)] * 2)
            finally:
                ring.close()
    finally:
        factory.reset()


def test_the_configs_led_kinds_are_exactly_the_drivers() -> None:
    from device.config.led_kinds import LED_KINDS
    from device.controls.leds import LED_DRIVERS

    assert tuple(LED_DRIVERS) == tuple(LED_KINDS)
