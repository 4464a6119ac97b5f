"""Signals delivered to this very process: SIGTERM/SIGINT request a stop, SIGHUP a (coalesced) reload."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from device.daemon.signals import SignalHandlers, stop_within

TIMEOUT = 5.0


class Reloads:
    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def __call__(self) -> None:
        self.calls += 1
        await self.gate.wait()
        if self.fail:
            raise ValueError("config.yaml:3: audio.volume: expected a number")


@pytest.fixture
def reloads() -> Reloads:
    return Reloads()


@pytest.fixture
async def handlers(reloads: Reloads) -> AsyncIterator[SignalHandlers]:
    h = SignalHandlers(on_reload=reloads)
    h.install()
    yield h
    h.uninstall()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_requests_a_graceful_stop(handlers: SignalHandlers, sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)
    assert await asyncio.wait_for(handlers.wait_for_stop(), TIMEOUT) == sig.name


async def test_a_second_stop_signal_keeps_the_first_reason(handlers: SignalHandlers) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(handlers.wait_for_stop(), TIMEOUT)
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.sleep(0.05)  # let the second signal be delivered (it must not raise KeyboardInterrupt)
    assert handlers.stop_reason == "SIGTERM"


async def test_sighup_runs_the_reload_callback(handlers: SignalHandlers, reloads: Reloads) -> None:
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(250):
        if handlers.reloads:
            break
        await asyncio.sleep(0.02)
    assert reloads.calls == 1 and handlers.reloads == 1
    assert not handlers.stop_requested.is_set()


async def test_sighups_during_a_reload_coalesce_into_one_more(handlers: SignalHandlers, reloads: Reloads) -> None:
    reloads.gate.clear()
    handlers.request_reload()
    await asyncio.sleep(0)
    for _ in range(3):
        handlers.request_reload()
    reloads.gate.set()
    await asyncio.wait_for(handlers.reload_finished(), TIMEOUT)
    assert reloads.calls == 2 and handlers.reloads == 2


async def test_a_failing_reload_is_logged_and_the_daemon_goes_on(handlers: SignalHandlers, reloads: Reloads,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    reloads.fail = True
    handlers.request_reload()
    await asyncio.wait_for(handlers.reload_finished(), TIMEOUT)
    assert "running configuration stays in effect" in caplog.text
    assert not handlers.stop_requested.is_set()
    reloads.fail = False
    handlers.request_reload()
    await asyncio.wait_for(handlers.reload_finished(), TIMEOUT)
    assert handlers.reloads == 2


async def test_no_reload_once_stopping(handlers: SignalHandlers, reloads: Reloads) -> None:
    handlers.request_stop("test")
    handlers.request_reload()
    await handlers.reload_finished()
    assert reloads.calls == 0


async def test_stop_within_reports_a_finished_cleanup() -> None:
    steps: list[str] = []

    async def cleanup() -> None:
        await asyncio.sleep(0)
        steps.append("closed")

    assert await stop_within(cleanup(), budget_s=TIMEOUT) is True
    assert steps == ["closed"]


async def test_stop_within_abandons_a_cleanup_that_outlives_its_budget() -> None:
    async def hangs() -> None:
        await asyncio.Event().wait()

    assert await asyncio.wait_for(stop_within(hangs(), budget_s=0.05), TIMEOUT) is False


async def test_stop_within_is_not_held_by_a_cleanup_that_swallows_cancellation() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    try:
        assert await asyncio.wait_for(stop_within(stubborn(), budget_s=0.05), TIMEOUT) is False
    finally:
        release.set()
        await asyncio.sleep(0)


async def test_stop_within_reports_a_failed_cleanup() -> None:
    async def broken() -> None:
        raise OSError("device busy")

    assert await stop_within(broken(), budget_s=TIMEOUT) is False
