"""The machine's timers on the loop: armed by effect, fired as events, replaced and cancelled by name."""

from __future__ import annotations

import asyncio

from device.controls.machine import FAILED_ALERT_S, initial, transition
from device.controls.timers import LoopTimers
from device.core.vocabulary import (
    ArmTimer,
    CancelTimer,
    Event,
    FailureReason,
    Pressed,
    SessionFailed,
    StartSession,
    TimerFired,
)
from tests.controls.conftest import FakeClock


async def test_an_armed_timer_fires_once_as_an_event(clock: FakeClock) -> None:
    got: list[Event] = []
    timers = LoopTimers(asyncio.get_running_loop(), got.append)
    assert timers.apply(ArmTimer("t", 2.0))
    await clock.advance(1.9)
    assert got == []
    await clock.advance(0.2)
    assert got == [TimerFired("t")] and timers.armed == frozenset()
    await clock.advance(5.0)
    assert got == [TimerFired("t")]


async def test_rearming_replaces_and_cancel_stops(clock: FakeClock) -> None:
    got: list[Event] = []
    timers = LoopTimers(asyncio.get_running_loop(), got.append)
    timers.apply(ArmTimer("t", 1.0))
    await clock.advance(0.5)
    timers.apply(ArmTimer("t", 1.0))
    await clock.advance(0.7)
    assert got == []
    timers.apply(CancelTimer("t"))
    await clock.advance(5.0)
    assert got == []
    assert timers.apply(StartSession()) is False


async def test_the_failed_alert_dims_through_the_loop_timer(clock: FakeClock) -> None:
    snap = initial("toggle")

    def feed(event: Event) -> None:
        nonlocal snap
        snap, effects = transition(snap, event, clock.now)
        for effect in effects:
            timers.apply(effect)

    timers = LoopTimers(asyncio.get_running_loop(), feed)
    feed(Pressed())
    feed(SessionFailed(FailureReason.AUTH))
    assert snap.alerting
    await clock.advance(FAILED_ALERT_S + 0.1)
    assert not snap.alerting
    timers.close()
