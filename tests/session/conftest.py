"""A supervisor wired to fakes: fake room(s), fake tokens, fake media, a fake ring and a fake clock."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from device.config.schema import BackoffConfig, Config, LiveKitConfig, SessionConfig
from device.core.vocabulary import Event
from device.session.supervisor import Supervisor
from tests.session.fakes import FakeAudioPort, FakeClock, FakeMedia, FakeTokens, Rooms, settle


def make_config(*, agent_name: str | None = "test-agent", **session: Any) -> Config:
    lk = LiveKitConfig(token_source="literal", url="wss://livekit.test", token="unused", agent_name=agent_name,
                       identity="device-test")
    backoff = session.pop("backoff", BackoffConfig(base_s=1.0, cap_s=30.0, attempts=3))
    return Config(livekit=lk, session=SessionConfig(backoff=backoff, **session))


@dataclass
class Rig:
    clock: FakeClock
    audio: FakeAudioPort
    rooms: Rooms
    tokens: FakeTokens
    media: FakeMedia
    sup: Supervisor
    events: list[Event] = field(default_factory=list)

    @property
    def room(self) -> Any:
        return self.rooms.last

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def settle(self) -> None:
        await settle()
        await self.sup.wait_quiet()
        await settle()

    async def run_for(self, seconds: float, step: float = 0.1) -> None:
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            await self.settle()

    async def start(self, preroll_ms: int = 0) -> int:
        mark = self.audio.mark(preroll_ms)
        await self.sup.start(mark)
        await self.settle()
        return mark


@pytest.fixture
async def make_rig() -> AsyncIterator[Any]:
    made: list[Rig] = []

    def build(*behaviours: Any, config: Config | None = None, tokens: FakeTokens | None = None,
              present: list[Any] | None = None, seed: int = 7, **session: Any) -> Rig:
        cfg = config or make_config(**session)
        clock, audio, media = FakeClock(), FakeAudioPort(), FakeMedia()
        rooms = Rooms(*behaviours, present=present)
        tokens = tokens or FakeTokens()
        events: list[Event] = []
        sup = Supervisor(cfg, audio, events.append, room_factory=rooms, token_source=tokens, clock=clock,
                         media=media, rng=random.Random(seed), wall=lambda: tokens.now)
        rig = Rig(clock, audio, rooms, tokens, media, sup, events)
        made.append(rig)
        return rig

    yield build
    for rig in made:
        task = asyncio.ensure_future(rig.sup.aclose())
        for _ in range(200):  # connect deadlines live on the fake clock: move it until the close is done
            if task.done():
                break
            rig.clock.advance(1.0)
            await settle()
        await asyncio.wait_for(task, 5)
