"""The always_on restart policy (`session/process/restart.py`), fed events by hand; and `clock.sleep` on the fake
clock the session processes' waits now share."""

from __future__ import annotations

import asyncio

from device.session.clock import sleep
from device.session.process.restart import RESTART_BASE_S, RESTART_CAP_S, Restarts
from tests.session.fakes import FakeClock, settle


def test_a_lost_session_is_started_again_after_a_back_off_that_grows_and_starts_over_at_a_normal_end() -> None:
    restarts = Restarts(keeps_session=True)
    delays = [restarts.lost() for _ in range(8)]
    assert delays[:3] == [RESTART_BASE_S, 2 * RESTART_BASE_S, 4 * RESTART_BASE_S]
    assert delays[-1] == RESTART_CAP_S
    restarts.ended()
    assert restarts.lost() == RESTART_BASE_S


def test_a_restart_is_due_once_and_not_after_a_start_or_an_end_called_it_off() -> None:
    restarts = Restarts(keeps_session=True)
    restarts.lost()
    assert restarts.due() and not restarts.due()
    restarts.lost()
    assert restarts.call_off()  # there was one to call off
    assert not restarts.due() and not restarts.call_off()


def test_a_mode_that_does_not_keep_its_session_never_restarts_it() -> None:
    restarts = Restarts(keeps_session=False)
    assert restarts.lost() is None
    assert not restarts.due() and not restarts.call_off()


async def test_sleep_on_the_fake_clock_wakes_when_the_clock_passes_its_delay() -> None:
    clock = FakeClock()
    nap = asyncio.ensure_future(sleep(clock, 2.0))
    await settle()
    clock.advance(1.9)
    await settle()
    assert not nap.done()
    clock.advance(0.1)
    await settle()
    assert nap.done()
