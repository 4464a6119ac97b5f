"""Controls fixtures: a fake clock the running loop obeys (edge times and timers alike)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


class FakeClock:
    """Replaces `loop.time`: timers armed with `call_at`/`call_later` fire when `advance` passes them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    async def advance(self, seconds: float = 0.0, *, steps: int = 1) -> None:
        for _ in range(steps):
            self.now += seconds / steps
            await settle()


async def settle() -> None:
    """Let callbacks handed over with call_soon_threadsafe (and what they schedule) run."""
    for _ in range(4):
        await asyncio.sleep(0)


@pytest.fixture
async def clock(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeClock]:
    fake = FakeClock()
    monkeypatch.setattr(asyncio.get_running_loop(), "time", fake.time)
    yield fake
