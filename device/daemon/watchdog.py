"""The health-gated systemd watchdog: WATCHDOG=1 is sent only while the daemon is really working.

Two health conditions gate every ping:
- the asyncio loop is responsive: a checker thread asks the loop to run a tiny "beat" callback at every tick
  (`call_soon_threadsafe`); if the loop has not run one for `max_loop_lag_s`, it is blocked or hung;
- whenever the mic should be open, mic frames arrived since the last ping (the app's `health` callable,
  sampled on the loop at each beat, says whether the mic should be open and when the last frame came).

The pings come from the checker thread, not from a loop task, so they stay on time while the loop is merely
busy, and stop when it is not: a hung loop or a dead audio device lets `WatchdogSec=` expire and systemd
restarts the service. When health comes back before that, pings resume at the next tick.

`decide()` is the whole policy as a pure function; `Watchdog` is the thin shell (thread, clock, notifier).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

log = logging.getLogger("device.daemon.watchdog")

# (mic_should_be_open, monotonic time of the last captured mic frame or None if none yet)
MicHealth = tuple[bool, float | None]


class Pinger(Protocol):
    def watchdog(self) -> bool: ...


class Verdict(StrEnum):
    PING = "ping"
    NOT_DUE = "not-due"
    LOOP_BLOCKED = "loop-blocked"
    MIC_SILENT = "mic-silent"


@dataclass(frozen=True)
class Observation:
    """Everything `decide` looks at, all times on the same monotonic clock."""

    now: float
    last_ping: float | None  # None: never pinged
    last_beat: float  # when the loop last ran a beat callback
    mic_should_be_open: bool
    last_capture: float | None  # as sampled at the last beat


def decide(obs: Observation, interval_s: float, max_loop_lag_s: float) -> Verdict:
    """Ping when one is due and the daemon is healthy; say why not otherwise.

    A due ping that is withheld is re-examined at every tick, so health that comes back in time is honoured
    without waiting for another whole interval.
    """
    if obs.last_ping is not None and obs.now - obs.last_ping < interval_s:
        return Verdict.NOT_DUE
    if obs.now - obs.last_beat > max_loop_lag_s:
        return Verdict.LOOP_BLOCKED
    if obs.mic_should_be_open and (
        obs.last_capture is None or (obs.last_ping is not None and obs.last_capture <= obs.last_ping)
    ):
        return Verdict.MIC_SILENT
    return Verdict.PING


class Watchdog:
    """Pings `notifier.watchdog()` every `interval_s` while `decide` says the daemon is healthy.

    Create and `start()` it on the running loop; `health()` runs on the loop, `tick()` on the checker thread
    (tests call `tick()` directly with `run_thread=False` and a fake clock).
    """

    def __init__(
        self,
        notifier: Pinger,
        interval_s: float,
        health: Callable[[], MicHealth] = lambda: (False, None),
        *,
        tick_s: float | None = None,
        max_loop_lag_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        run_thread: bool = True,
    ):
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.notifier = notifier
        self.interval_s = interval_s
        # Ticks several times per interval so a withheld ping is retried soon after health returns.
        self.tick_s = tick_s if tick_s is not None else min(interval_s / 4, 1.0)
        # How long the loop may go without running a callback and still be called responsive.
        self.max_loop_lag_s = max_loop_lag_s if max_loop_lag_s is not None else min(interval_s, 3.0)
        self.health = health
        self.clock = clock
        self.run_thread = run_thread
        self.pings = 0
        self.last_verdict: Verdict | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_ping: float | None = None
        self._beat: tuple[float, MicHealth] = (0.0, (False, None))  # replaced as a whole: atomic for the thread
        self._beat_pending = False  # one beat request in flight at most: a blocked loop must not pile them up
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start on the running loop: one beat now (the loop is alive), then the checker thread."""
        self._loop = asyncio.get_running_loop()
        self._run_beat()
        if self.run_thread:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="voice-device-watchdog", daemon=True)
            self._thread.start()
        log.info("watchdog started interval_s=%.3g tick_s=%.3g max_loop_lag_s=%.3g",
                 self.interval_s, self.tick_s, self.max_loop_lag_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, 2 * self.tick_s))
            self._thread = None

    def tick(self) -> Verdict:
        """One check: decide with the last beat's sample, maybe ping, and ask the loop for a fresh beat."""
        last_beat, (mic_should_be_open, last_capture) = self._beat
        now = self.clock()
        verdict = decide(Observation(now, self._last_ping, last_beat, mic_should_be_open, last_capture),
                         self.interval_s, self.max_loop_lag_s)
        if verdict is Verdict.PING:
            self.notifier.watchdog()
            self._last_ping = now
            self.pings += 1
        self._log_change(verdict, now - last_beat)
        self._request_beat()
        return verdict

    def _log_change(self, verdict: Verdict, loop_lag: float) -> None:
        if verdict is Verdict.NOT_DUE:
            return
        previous, self.last_verdict = self.last_verdict, verdict
        if verdict is previous:
            return
        if verdict is Verdict.PING:
            if previous is not None:
                log.info("watchdog pings resumed")
        else:
            log.warning("watchdog withheld reason=%s loop_lag_s=%.3f (systemd restarts the service if this lasts)",
                        verdict, loop_lag)

    def _request_beat(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or self._beat_pending:
            return
        self._beat_pending = True
        try:
            loop.call_soon_threadsafe(self._run_beat)
        except RuntimeError:  # the loop closed between the check and the call
            self._beat_pending = False

    def _run_beat(self) -> None:
        try:
            sample = self.health()
        except Exception:
            log.exception("watchdog health check failed")
            sample = (True, None)  # unknown health is bad health: withhold the ping
        self._beat = (self.clock(), sample)
        self._beat_pending = False

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception:
                log.exception("watchdog tick failed")
