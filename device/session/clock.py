"""The session layer's one source of time: a `Clock` (monotonic now + call_later), `within`, a deadline on it, and
`sleep`, a pause on it.

Every session timer — agent connect, idle, max length, retry backoff, the pre-connect stream budget, the connect
deadline, and the session processes' spawn back-off, ready wait, hung check and always_on restart — is armed on this
clock, so tests swap in a fake clock and drive time by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class LoopClock:
    """The running asyncio loop's monotonic clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)


async def within(clock: Clock, awaitable: Awaitable[T], timeout: float) -> T:
    """`asyncio.wait_for` whose deadline lives on `clock`: raises TimeoutError when `timeout` passes first."""
    task = asyncio.ensure_future(awaitable)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = clock.call_later(timeout, expire)
    try:
        return await task
    except asyncio.CancelledError:
        if expired:
            raise TimeoutError(f"no answer within {timeout:g} s") from None
        raise
    finally:
        timer.cancel()


async def sleep(clock: Clock, delay: float) -> None:
    """`asyncio.sleep` on `clock`."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    timer = clock.call_later(delay, wake)
    try:
        await done
    finally:
        timer.cancel()
