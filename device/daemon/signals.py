"""Signals on the asyncio loop: SIGTERM/SIGINT ask for a graceful stop, SIGHUP asks for a config reload.

Handlers only record the request and return (no work inside a signal handler). The app waits for the stop
with `wait_for_stop()` and then runs its cleanup under `stop_within()`, which gives up after the budget so
that `systemctl stop` never waits for `TimeoutStopSec=` and a SIGKILL. Reloads run one at a time on the loop;
SIGHUPs arriving during a reload coalesce into one more reload afterwards.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable

log = logging.getLogger("device.daemon.signals")

STOP_BUDGET_S = 5.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

ReloadCallback = Callable[[], Awaitable[None] | None]


class SignalHandlers:
    """Install with `install()` from inside the running loop (main thread); `uninstall()` restores defaults."""

    def __init__(self, on_reload: ReloadCallback | None = None):
        self.on_reload = on_reload
        self.stop_requested = asyncio.Event()
        self.stop_reason: str | None = None  # "SIGTERM", "SIGINT", or what `request_stop` was given
        self.reloads = 0  # completed reload attempts (successful or not)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reload_task: asyncio.Task[None] | None = None
        self._reload_again = False

    def install(self) -> None:
        self._loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            self._loop.add_signal_handler(sig, self.request_stop, sig.name)
        if self.on_reload is not None:
            self._loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    def uninstall(self) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        for sig in (*STOP_SIGNALS, signal.SIGHUP):
            self._loop.remove_signal_handler(sig)

    def request_stop(self, reason: str = "requested") -> None:
        if self.stop_requested.is_set():
            log.info("stop already in progress signal=%s", reason)
            return
        log.info("stop requested by=%s", reason)
        self.stop_reason = reason
        self.stop_requested.set()

    async def wait_for_stop(self) -> str:
        """Wait until a stop signal (or `request_stop`) arrives; return its name."""
        await self.stop_requested.wait()
        return self.stop_reason or "requested"

    def request_reload(self) -> None:
        if self.on_reload is None or self.stop_requested.is_set():
            return
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_again = True
            return
        self._reload_task = asyncio.get_running_loop().create_task(self._reload(), name="voice-device-reload")

    async def reload_finished(self) -> None:
        """Wait for the running reload (and the one it coalesced) to finish; returns at once if none runs."""
        while self._reload_task is not None and not self._reload_task.done():
            await asyncio.shield(self._reload_task)

    async def _reload(self) -> None:
        while True:
            self._reload_again = False
            log.info("reload requested by=SIGHUP")
            try:
                result = self.on_reload() if self.on_reload else None
                if inspect.isawaitable(result):
                    await result
            except Exception:
                # The callback owns reporting a bad config; anything escaping it must not end the daemon.
                log.exception("reload failed; the running configuration stays in effect")
            self.reloads += 1
            if not self._reload_again or self.stop_requested.is_set():
                return


async def stop_within(cleanup: Awaitable[None], budget_s: float = STOP_BUDGET_S) -> bool:
    """Run `cleanup` for at most `budget_s`; True if it finished, False if it failed or was abandoned.

    On time-out the cleanup is cancelled but not awaited further: a step that swallows the cancellation must
    not hold the process past its budget.
    """
    task = asyncio.ensure_future(cleanup)
    done, _ = await asyncio.wait({task}, timeout=budget_s)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
        log.warning("stop budget exceeded budget_s=%.1f; exiting without the remaining cleanup", budget_s)
        return False
    if task.cancelled():
        log.warning("cleanup was cancelled")
        return False
    if task.exception() is not None:
        log.error("cleanup failed error=%r", task.exception())
        return False
    return True
