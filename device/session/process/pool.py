"""The session processes the daemon keeps (`Pool`): the spare — the child the next session will run in — started
ahead in `warm` mode (at start-up and when a session ends, never during one, where its import would compete with the
audio for CPU) and at the press in `on_demand`; started again ever more slowly while they keep failing; checked for
hangs; closed at the end. Its waits and pauses are on the session clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from device.core.backoff import Backoff
from device.session.clock import Clock, sleep, within
from device.session.process.child import Child
from device.session.process.protocol import Hello
from device.session.supervisor import SessionError

log = logging.getLogger("device.session.process.pool")

READY_TIMEOUT_S = 60.0  # python + numpy + livekit import on a slow SD card
RESPAWN_BASE_S, RESPAWN_CAP_S = 0.5, 30.0  # a session process that keeps dying is started again ever more slowly


class Pool:
    """The children: `take` hands the next session its child, `retire` closes one whose session is over."""

    def __init__(self, make: Callable[[], Child], hello: Callable[[], Hello], clock: Clock, *, warm: bool,
                 grace_s: float, silent_limit_s: float) -> None:
        self._make = make
        self._hello = hello  # what a new child is told first (the current mute and volume)
        self._clock = clock
        self._warm = warm
        self._grace = grace_s  # a retired child's own disconnect; it is killed after this
        self._silent_limit = silent_limit_s  # a ready child speaks every second; silent this long, it is hung
        self.children: set[Child] = set()
        self.spare: asyncio.Task[Child] | None = None  # the next session's child, starting or ready
        self.started = 0  # children started so far
        self.closed = False
        self._respawns = respawn_backoff()  # children that failed to start or died, in a row
        self._closing: set[asyncio.Task[None]] = set()
        self._monitor = asyncio.get_running_loop().create_task(self._watch())
        if warm:
            self.prepare()

    def prepare(self) -> asyncio.Task[Child]:
        """The spare: the child the next session will run in, started now unless one is starting or ready."""
        spare = self.spare
        if spare is None or (spare.done() and (spare.cancelled() or spare.exception() is not None
                                               or not spare.result().alive)):
            spare = self.spare = asyncio.get_running_loop().create_task(self._spawn())
            spare.add_done_callback(_log_spawn_failure)
        return spare

    def spare_pid(self) -> int | None:
        """The process id of the spare, once it is ready for the next session (None: there is none yet)."""
        spare = self.spare
        if spare is None or not spare.done() or spare.cancelled() or spare.exception() is not None:
            return None
        return spare.result().pid

    def refill(self) -> None:
        """In `warm` mode, a spare for the next session (a session ended, or a child exited)."""
        if self._warm and not self.closed:
            self.prepare()

    async def take(self, wait_s: float) -> Child:
        """The ready child for the next session, started now if there is none; TimeoutError when none is ready within
        `wait_s`, SessionError (or OSError) when none can start."""
        child = await within(self._clock, self._ready_spare(), wait_s)
        self.spare = None
        return child

    async def _ready_spare(self) -> Child:
        while not (child := await asyncio.shield(self.prepare())).alive:
            pass  # the spare died while waiting: prepare starts another
        return child

    def failed(self) -> None:
        """A child died while serving the device: the next one is started after the back-off."""
        self._respawns.next_delay()

    def retire(self, child: Child) -> None:
        """Close `child` (its session is over) in the background."""
        task = asyncio.get_running_loop().create_task(child.close(self._grace))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def gone(self, child: Child) -> None:
        """`child` exited; in `warm` mode a spare that died is replaced (with back-off if they keep dying)."""
        self.children.discard(child)
        self.refill()

    async def aclose(self) -> None:
        """Stop every child; a child still busy after the grace is killed, and a cancelled close kills them all."""
        self.closed = True
        self._monitor.cancel()
        try:
            if self.spare is not None and not self.spare.done():
                self.spare.cancel()
                await asyncio.gather(self.spare, return_exceptions=True)
            await asyncio.gather(*(c.close(self._grace) for c in list(self.children)), return_exceptions=True)
            await asyncio.gather(*self._closing, return_exceptions=True)
        finally:
            for child in list(self.children):
                child.kill()

    async def _spawn(self) -> Child:
        if self._respawns.failures:
            await sleep(self._clock, self._respawns.ceiling)
        child = self._make()
        self.started += 1
        self.children.add(child)
        try:
            await child.spawn(self._hello())
        except Exception as e:
            child.kill()
            self.children.discard(child)
            self._respawns.next_delay()
            raise SessionError(f"the session process could not be started: {e}") from None
        child.ready.add_done_callback(lambda f: f.cancelled() or f.exception())  # read here or by the caller
        try:
            await within(self._clock, asyncio.shield(child.ready), READY_TIMEOUT_S)
        except TimeoutError:
            child.kill()
            self._respawns.next_delay()
            raise SessionError(f"the session process did not start within {READY_TIMEOUT_S:.0f} s") from None
        except SessionError:
            self._respawns.next_delay()
            raise
        self._respawns.reset()
        return child

    async def _watch(self) -> None:
        # After a stall of this loop itself, the reader tasks run before this one wakes (asyncio runs I/O callbacks
        # first) and mark whatever the children sent meanwhile as heard: a blocked daemon kills no healthy child.
        while True:
            await sleep(self._clock, min(1.0, self._silent_limit / 2))
            for child in list(self.children):
                child.check(self._clock.now(), self._silent_limit)


def respawn_backoff() -> Backoff:
    return Backoff(RESPAWN_BASE_S, RESPAWN_CAP_S, jitter=False)


def _log_spawn_failure(task: asyncio.Task[Child]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("session process start failed error=%s", task.exception())
