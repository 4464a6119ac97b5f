"""A press's pre-roll mark is taken at the press, not when its StartSession effect gets its turn: the daemon's one
event path (`App.feed` → machine → effects in order) with the real session supervisor behind it, on fakes (fake
room, tokens, media, a fake ring and a fake clock), and the previous session's teardown held up by hand.

Effects run in order, so a press right after an end waits for that end's teardown (the room's disconnect, up to
5 s); what the user says meanwhile must reach the agent, or be counted as lost with a reason when the ring could
no longer hold it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from device.config.schema import AudioConfig, Config
from device.controls.timers import LoopTimers
from device.core.vocabulary import EndRequested, Pressed, StartRequested
from device.daemon.app import App
from device.session.supervisor import Supervisor
from tests.daemon.fakeparts import FakeParts
from tests.session.conftest import make_config
from tests.session.fakes import FakeAudioPort, FakeClock, FakeMedia, FakeRoom, FakeTokens, Rooms, settle

RATE = 16000
PREROLL_MS = 500


def ms(n: int) -> int:
    return RATE * n // 1000


class Audio(FakeAudioPort):
    def __init__(self, keep_ms: int | None = None) -> None:
        super().__init__(RATE, keep_ms=keep_ms)
        self.earcons: list[str] = []

    def play_earcon(self, name: str) -> None:
        self.earcons.append(name)


@dataclass
class Rig:
    app: App
    audio: Audio
    rooms: Rooms
    sup: Supervisor

    def slow_teardown(self, room: FakeRoom) -> asyncio.Event:
        """The room's disconnect waits until the returned event is set (a teardown that takes its time)."""
        gate = asyncio.Event()
        disconnect = room.disconnect

        async def slow(**kwargs: Any) -> None:
            await gate.wait()
            await disconnect(**kwargs)

        room.disconnect = slow  # type: ignore[method-assign]
        return gate


@pytest.fixture
async def press_rig(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Callable[..., Rig]]:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    made: list[tuple[Rig, FakeClock, LoopTimers, asyncio.Task[None]]] = []

    def build(keep_ms: int | None = None) -> Rig:
        config = make_config(mode="toggle")
        config = Config(livekit=config.livekit, session=config.session, audio=AudioConfig(preroll_ms=PREROLL_MS))
        app = App(config, "unused.yaml")
        clock, audio, rooms, tokens = FakeClock(), Audio(keep_ms), Rooms(), FakeTokens()
        sup = Supervisor(config, audio, app.feed, room_factory=rooms, token_source=tokens, clock=clock,
                         media=FakeMedia(), rng=random.Random(7), wall=lambda: tokens.now)
        timers = LoopTimers(asyncio.get_running_loop(), app.feed)
        app.parts = FakeParts(config, audio, sup, timers)  # type: ignore[assignment]
        worker = asyncio.get_running_loop().create_task(app._run_effects())
        rig = Rig(app, audio, rooms, sup)
        made.append((rig, clock, timers, worker))
        return rig

    yield build
    for rig, clock, timers, worker in made:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        timers.close()
        task = asyncio.ensure_future(rig.sup.aclose())
        for _ in range(200):  # deadlines live on the fake clock: move it until the close is done
            if task.done():
                break
            clock.advance(1.0)
            await settle()
        await asyncio.wait_for(task, 5)


async def end_then_press_during_the_teardown(rig: Rig, speech_ms: int) -> tuple[FakeRoom, int, int]:
    """A session, ended; a press while its teardown runs, then `speech_ms` of speech; then the teardown ends.
    Returns the second session's room, the ring index at the press and where the speech began."""
    rig.app.feed(StartRequested())  # `ctl start`
    await settle()
    first = rig.rooms.last
    assert first.connected
    gate = rig.slow_teardown(first)
    rig.audio.silence(1000)
    rig.app.feed(EndRequested())  # `ctl end`: the teardown begins and holds
    await settle()
    assert first.disconnects == [] and len(rig.rooms.made) == 1
    rig.audio.silence(1000)
    pressed_at = rig.audio.produced
    rig.app.feed(Pressed())  # toggle: a new session, whose StartSession waits behind the end
    rig.audio.silence(200)
    spoke_at = rig.audio.produced
    rig.audio.speak(speech_ms)  # the user talks while the old room is still being left
    await settle()
    assert len(rig.rooms.made) == 1  # the new session has not started yet
    gate.set()
    for _ in range(5):
        await settle()
    second = rig.rooms.last
    assert second is not first and second.connected
    return second, pressed_at, spoke_at


async def test_speech_between_a_press_and_a_start_held_up_by_the_last_teardown_reaches_the_agent(press_rig):
    rig = press_rig()
    room, pressed_at, spoke_at = await end_then_press_during_the_teardown(rig, speech_ms=1500)
    room.agent_joins(state="initializing")
    await settle()
    uplink = rig.sup._uplink
    sent = room.local_participant.writers[0].samples()
    mark = pressed_at - ms(PREROLL_MS)  # the pre-roll before the press, not before the session's start
    assert uplink.streams[0].first == mark
    np.testing.assert_array_equal(sent, rig.audio.samples[mark : mark + len(sent)])
    assert mark + len(sent) == rig.audio.produced  # everything from the mark on, the speech whole
    assert spoke_at + ms(1500) <= rig.audio.produced
    assert uplink.dropped_samples == 0 and uplink.gaps == 0


async def test_a_mark_the_ring_no_longer_holds_at_the_start_is_counted_as_lost_with_a_reason(press_rig, caplog):
    rig = press_rig(keep_ms=2000)  # a ring shorter than the press's wait (the teardown, then the speech)
    caplog.set_level(logging.WARNING, logger="device.session.uplink.uplink")
    room, pressed_at, _ = await end_then_press_during_the_teardown(rig, speech_ms=2500)
    room.agent_joins(state="initializing")
    await settle()
    uplink = rig.sup._uplink
    mark = pressed_at - ms(PREROLL_MS)
    oldest = uplink.streams[0].first  # where the session's audio could begin: the oldest sample still kept
    assert oldest == rig.audio.produced - ms(2000) > mark
    sent = room.local_participant.writers[0].samples()
    np.testing.assert_array_equal(sent, rig.audio.samples[oldest : oldest + len(sent)])
    assert uplink.dropped_samples == oldest - mark
    assert "ring" in uplink.drop_reason
    status = rig.sup.status().preconnect
    assert status is not None and status.dropped_ms == (oldest - mark) * 1000 // RATE
    assert any("left the ring" in r.getMessage() and f"lost_ms={(oldest - mark) * 1000 // RATE}" in r.getMessage()
               for r in caplog.records)
