"""An end is an end, also for a start that has not reached its session process yet: the daemon's one event path
(`App.feed` → machine → effects in order) with the real `RemoteSupervisor` behind it and real session processes
(tests/session/hostfactory.py: fake rooms). Found end to end (tests/proof/test_promises_e2e.py): `ctl start` while
the session process was still starting, `ctl end` at once; the device showed idle, and when the process was ready
the start went on and the device joined a room, with an agent dispatched, after the end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from device.controls.timers import LoopTimers
from device.core.vocabulary import EndRequested, Pressed, Released, StartRequested
from device.daemon.app import App
from device.session.process.remote import RemoteSupervisor
from tests.daemon.fakeparts import FakeParts
from tests.polling import until
from tests.session.conftest import make_config
from tests.session.fakes import FakeAudioPort

FACTORY = "tests.session.hostfactory:scripted"


class Audio(FakeAudioPort):
    def play_earcon(self, name: str) -> None:
        pass


@pytest.fixture
async def daemon(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Callable[[str], tuple[App, RemoteSupervisor]]]:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    made: list[tuple[RemoteSupervisor, LoopTimers, asyncio.Task[None]]] = []

    def build(mode: str) -> tuple[App, RemoteSupervisor]:
        config = make_config(mode=mode)
        app = App(config, "unused.yaml")
        audio = Audio()
        # on_demand: the session's process is started at the press, and takes a moment to be ready
        sup = RemoteSupervisor(config, audio, app.feed, warm=False, factory=FACTORY)
        timers = LoopTimers(asyncio.get_running_loop(), app.feed)
        app.parts = FakeParts(config, audio, sup, timers)  # type: ignore[assignment]
        worker = asyncio.get_running_loop().create_task(app._run_effects())
        made.append((sup, timers, worker))
        audio.speak(500)
        return app, sup

    yield build
    for sup, timers, worker in made:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        timers.close()
        await sup.aclose()


def connects(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("session connecting")]


def ready(caplog: pytest.LogCaptureFixture) -> bool:
    return any(r.getMessage().startswith("session process ready") for r in caplog.records)


@pytest.mark.parametrize("press", [False, True], ids=["ctl-start", "push-to-talk-press"])
async def test_an_end_while_the_start_waits_for_its_session_process_opens_no_room(daemon, caplog, press) -> None:
    caplog.set_level(logging.INFO)
    app, sup = daemon("push_to_talk" if press else "toggle")
    if press:
        app.feed(Pressed())  # StartSession, then StartTurn of the same session
        app.feed(Released())
    else:
        app.feed(StartRequested())
    await until(lambda: sup.pool.spare is not None, "the session process to be starting")
    assert not ready(caplog)
    app.feed(EndRequested())  # `ctl end` while the process is still starting
    assert str(app.parts.snapshot.state) == "idle"  # type: ignore[union-attr]
    await until(lambda: ready(caplog), "the session process to be ready")
    await asyncio.sleep(1.0)  # a start that went on would be connecting by now (the fake room connects at once)
    assert not connects(caplog), "a room was joined after the end, with no new trigger"
    assert sup.current is None
    # the next trigger still works, in the process that was started
    app.feed(StartRequested() if not press else Pressed())
    await until(lambda: connects(caplog), "the next session to connect")
