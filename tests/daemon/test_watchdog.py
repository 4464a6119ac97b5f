"""The watchdog pings systemd only while the loop is responsive and, when the mic should be open, it delivers.

The shell is driven tick by tick with a fake clock (no real waiting) against a real datagram socket: a
blocked loop is real (synchronous code inside a coroutine), so the loop's beat callback genuinely cannot run.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from device.daemon.notify import Notifier
from device.daemon.watchdog import Observation, Verdict, Watchdog, decide
from tests.daemon.conftest import NotifySocket

PING = {"WATCHDOG": "1"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Mic:
    """What the app's health callable reports: should the mic be open, and when did it last deliver."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.should_be_open = False
        self.last_capture: float | None = None

    def frame(self) -> None:
        self.last_capture = self.clock()

    def health(self) -> tuple[bool, float | None]:
        return self.should_be_open, self.last_capture


# ---- the pure policy ------------------------------------------------------------------------------------------


def obs(now: float, last_ping: float | None = 0.0, last_beat: float | None = None, mic: bool = False,
        capture: float | None = None) -> Observation:
    return Observation(now, last_ping, now if last_beat is None else last_beat, mic, capture)


def test_first_ping_is_due_at_once() -> None:
    assert decide(obs(5.0, last_ping=None), interval_s=1.0, max_loop_lag_s=0.5) is Verdict.PING


def test_no_ping_before_the_interval_elapsed() -> None:
    assert decide(obs(0.9), interval_s=1.0, max_loop_lag_s=0.5) is Verdict.NOT_DUE


def test_a_loop_that_ran_no_callback_for_longer_than_the_lag_limit_is_blocked() -> None:
    assert decide(obs(2.0, last_beat=1.4), interval_s=1.0, max_loop_lag_s=0.5) is Verdict.LOOP_BLOCKED
    assert decide(obs(2.0, last_beat=1.6), interval_s=1.0, max_loop_lag_s=0.5) is Verdict.PING


def test_mic_that_should_be_open_needs_a_frame_since_the_last_ping() -> None:
    assert decide(obs(2.0, mic=True, capture=None), 1.0, 0.5) is Verdict.MIC_SILENT
    assert decide(obs(2.0, mic=True, capture=0.0), 1.0, 0.5) is Verdict.MIC_SILENT
    assert decide(obs(2.0, mic=True, capture=0.01), 1.0, 0.5) is Verdict.PING


def test_a_closed_mic_is_not_required_to_deliver() -> None:
    assert decide(obs(2.0, mic=False, capture=None), 1.0, 0.5) is Verdict.PING


# ---- the shell against a real socket --------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mic(clock: FakeClock) -> Mic:
    return Mic(clock)


@pytest.fixture
async def watchdog(notify_socket: NotifySocket, clock: FakeClock, mic: Mic):
    wd = Watchdog(Notifier(notify_socket.address), interval_s=1.0, health=mic.health, tick_s=0.25,
                  max_loop_lag_s=0.6, clock=clock, run_thread=False)
    wd.start()
    yield wd
    wd.stop()


async def healthy_steps(wd: Watchdog, clock: FakeClock, seconds: float, mic: Mic | None = None) -> None:
    """Let time pass with a responsive loop: tick, then let the loop run the beat the tick asked for."""
    for _ in range(round(seconds / wd.tick_s)):
        clock.now += wd.tick_s
        if mic is not None:
            mic.frame()
        wd.tick()
        await asyncio.sleep(0)
        await asyncio.sleep(0)


async def test_pings_every_interval_while_healthy(watchdog: Watchdog, clock: FakeClock,
                                                  notify_socket: NotifySocket) -> None:
    await healthy_steps(watchdog, clock, 3.0)
    assert notify_socket.messages() == [PING] * 3


async def test_no_ping_while_the_loop_is_blocked_and_pings_resume_after(
    watchdog: Watchdog, clock: FakeClock, notify_socket: NotifySocket
) -> None:
    await healthy_steps(watchdog, clock, 1.0)
    assert notify_socket.messages() == [PING]
    # The loop is blocked for 3 s: this coroutine never yields, so no beat callback can run. A ping may still
    # vouch for the loop while its last beat is younger than max_loop_lag_s, never later.
    blocked_at = clock.now
    late_pings = []
    for _ in range(12):
        clock.now += 0.25
        watchdog.tick()
        if notify_socket.messages() and clock.now - blocked_at > watchdog.max_loop_lag_s:
            late_pings.append(clock.now - blocked_at)
    assert late_pings == [] and watchdog.last_verdict is Verdict.LOOP_BLOCKED
    await asyncio.sleep(0)  # unblocked: the pending beat runs
    watchdog.tick()
    assert notify_socket.messages() == [PING]


async def test_a_genuinely_blocked_loop_stops_real_pings_from_the_thread(notify_socket: NotifySocket) -> None:
    # The real shell: its own thread and the monotonic clock. Pings are allowed only while the last beat is
    # younger than max_loop_lag_s, so a blocked loop gets at most max_loop_lag_s / interval_s + 1 of them,
    # however the threads are scheduled; an ungated pinger would send one every interval.
    wd = Watchdog(Notifier(notify_socket.address), interval_s=0.05, tick_s=0.01, max_loop_lag_s=0.1)
    wd.start()
    try:
        await asyncio.sleep(0.2)
        pings_before = wd.pings
        deadline = time.monotonic() + 5.0
        while wd.last_verdict is not Verdict.LOOP_BLOCKED and time.monotonic() < deadline:
            time.sleep(0.01)  # blocks the loop until the thread has noticed
        time.sleep(0.5)  # ten more intervals of a blocked loop
        assert wd.last_verdict is Verdict.LOOP_BLOCKED
        assert wd.pings - pings_before <= 3
        deadline = time.monotonic() + 5.0
        while wd.last_verdict is not Verdict.PING and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the loop runs again: pings resume
        assert wd.last_verdict is Verdict.PING
    finally:
        wd.stop()


async def test_no_ping_while_the_mic_should_be_open_and_is_silent(
    watchdog: Watchdog, clock: FakeClock, mic: Mic, notify_socket: NotifySocket
) -> None:
    mic.should_be_open = True
    await healthy_steps(watchdog, clock, 2.0, mic=mic)
    assert notify_socket.messages() == [PING, PING]
    await healthy_steps(watchdog, clock, 3.0)  # the audio device died: no frames
    # One more ping covers the frames that arrived after the last one and before the device died; then none.
    assert notify_socket.messages() == [PING] and watchdog.last_verdict is Verdict.MIC_SILENT
    await healthy_steps(watchdog, clock, 3.0)
    assert notify_socket.messages() == []
    await healthy_steps(watchdog, clock, 0.5, mic=mic)  # frames flow again
    assert notify_socket.messages() == [PING]


async def test_a_silent_mic_that_should_be_closed_does_not_stop_pings(
    watchdog: Watchdog, clock: FakeClock, mic: Mic, notify_socket: NotifySocket
) -> None:
    mic.should_be_open = False
    await healthy_steps(watchdog, clock, 2.0)
    assert notify_socket.messages() == [PING, PING]


async def test_a_failing_health_check_withholds_the_ping(notify_socket: NotifySocket, clock: FakeClock) -> None:
    def broken() -> tuple[bool, float | None]:
        raise RuntimeError("audio layer bug")

    wd = Watchdog(Notifier(notify_socket.address), 1.0, broken, tick_s=0.25, clock=clock, run_thread=False)
    wd.start()
    await healthy_steps(wd, clock, 2.0)
    assert notify_socket.messages() == [] and wd.last_verdict is Verdict.MIC_SILENT
