"""A session per child process (`session/process/remote.py` + `host.py`): real children, fake rooms.

Each test starts real `python -m device.session.process.host` children whose Supervisor talks to scripted fake rooms
(tests/session/hostfactory.py); the daemon side (RemoteSupervisor) is what the daemon runs. The real SDK over
the wire is covered by the wire tests, which run the daemon with its default `session.process: warm`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device.core.vocabulary import AgentStateChanged, Event, FailureReason, SessionEnded, SessionFailed
from device.session.marks import Marks
from device.session.process.remote import RemoteSupervisor
from device.session.status import ProcessStatus
from tests.polling import until
from tests.session.conftest import make_config
from tests.session.fakes import FakeAudioPort
from tests.session.hostfactory import SPEECH

FACTORY = "tests.session.hostfactory:scripted"


class Rig:
    def __init__(self, *, warm: bool = True, factory: str = FACTORY, config: Any = None, identity: str | None = None,
                 **session: Any) -> None:
        self.audio = FakeAudioPort(sample_rate=16000)
        self.events: list[Event] = []
        config = config or make_config(**session)
        self.marks = Marks(self.audio, config.audio.preroll_ms)
        self.sup = RemoteSupervisor(config, self.audio, self.events.append, warm=warm, factory=factory,
                                    identity=identity, marks=self.marks)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def listening(self) -> bool:
        return any(isinstance(e, AgentStateChanged) and e.state == "listening" for e in self.events)

    async def session(self, preroll_ms: int = 200) -> int:
        """Speak, press (with pre-roll), wait for the agent to listen and speak, end; returns the child's pid."""
        self.audio.speak(500)
        mark = self.audio.mark(preroll_ms)
        before = len(self.audio.player.frames)
        await self.sup.start(mark)
        pid = self.sup.status().process.pid
        await until(self.listening, "agent listening")
        await until(lambda: len(self.audio.player.frames) >= before + len(SPEECH), "the agent's audio played")
        self.audio.speak(300)
        await asyncio.sleep(0.3)
        ended = len(self.of(SessionEnded))
        await self.sup.end("requested")
        await until(lambda: len(self.of(SessionEnded)) > ended, "session ended")
        self.events.clear()
        return pid


def sent_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    return [dict(re.findall(r"(\w+)=(\S+)", r.getMessage())) for r in caplog.records
            if r.name == "tests.fake" and r.getMessage().startswith("fake: sent")]


def alive(pid: int) -> bool:
    """Running (a zombie has exited; asyncio's child watcher reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or exiting as it is read (ESRCH)
        return False


async def test_each_session_runs_in_its_own_child_and_the_child_exits_after_it(caplog) -> None:
    caplog.set_level(logging.INFO)
    rig = Rig()
    try:
        first = await rig.session()
        await until(lambda: not alive(first), "the first session's process to exit")
        second = await rig.session()
        assert second != first
        await until(lambda: not alive(second), "the second session's process to exit")
        status = rig.sup.status()
        assert status.metrics.sessions == 2  # summed over children
        assert status.process is not None and status.process.started >= 2
        # idle, warm: the spare waiting for the next session is shown (the metrics follow its memory and CPU)
        spare = await until(lambda: (p := rig.sup.status().process) is not None and p.spare_pid, "a ready spare")
        assert alive(spare) and spare not in (first, second) and rig.sup.status().process.pid is None
        identities = {r.getMessage().split("identity=")[1].split()[0] for r in caplog.records
                      if "session connecting" in r.getMessage()}
        assert identities == {"device-test"}
    finally:
        await rig.sup.aclose()


async def test_the_child_connects_with_the_identity_the_daemon_kept_when_none_is_configured(caplog) -> None:
    caplog.set_level(logging.INFO)
    config = make_config()
    rig = Rig(config=replace(config, livekit=replace(config.livekit, identity=None)), identity="device-0123456789ab")
    try:
        await rig.session()
        identities = {r.getMessage().split("identity=")[1].split()[0] for r in caplog.records
                      if "session connecting" in r.getMessage()}
        assert identities == {"device-0123456789ab"}  # the daemon's, not one the child derived on its own
    finally:
        await rig.sup.aclose()


async def test_the_mic_reaches_the_child_from_the_mark_sample_exact(caplog) -> None:
    # the agent hears the pre-connect stream then the live track: together, the ring from the mark, no gap
    caplog.set_level(logging.INFO)
    rig = Rig()
    try:
        rig.audio.speak(800)
        mark = rig.audio.mark(300)
        await rig.sup.start(mark)
        await until(rig.listening, "agent listening")
        rig.audio.speak(400)
        await asyncio.sleep(0.5)
        await rig.sup.end("requested")
        lines = await until(lambda: sent_lines(caplog), "the child's report of what it sent")
        assert lines[0]["exact"] == "True"
        assert int(lines[0]["first"]) == mark
        assert int(lines[0]["n"]) >= rig.audio.produced - mark - 16000 * 0.1  # all of it, up to the last chunk
    finally:
        await rig.sup.aclose()


async def test_the_agents_audio_plays_on_the_daemons_player_unchanged() -> None:
    rig = Rig()
    try:
        await rig.session()
        got = [np.frombuffer(bytes(f.data), dtype=np.int16) for f in rig.audio.player.frames]
        assert len(got) == len(SPEECH)
        for frame, want in zip(got, SPEECH, strict=True):
            assert np.array_equal(frame, want)
        assert {f.sample_rate for f in rig.audio.player.frames} == {16000}
    finally:
        await rig.sup.aclose()


async def test_mute_set_while_the_spare_waits_reaches_it_before_its_session(caplog) -> None:
    # privacy: the ready child was told "unmuted" when it started; the mute pressed since must reach it
    caplog.set_level(logging.INFO)
    rig = Rig()
    try:
        await rig.sup.pool.prepare()  # the spare is ready (its hello said unmuted)
        await rig.sup.set_muted(True)
        await rig.session()
        assert sent_lines(caplog)[-1]["muted"] == "True"
        assert rig.sup.status().muted is True
    finally:
        await rig.sup.aclose()


async def test_a_child_that_dies_mid_session_fails_it_and_the_next_press_gets_a_fresh_child(tmp_path,
                                                                                         monkeypatch) -> None:
    marker = tmp_path / "crash"
    marker.touch()
    monkeypatch.setenv("VD_FAKE_CRASH", str(marker))
    rig = Rig()
    try:
        rig.audio.speak(300)
        await rig.sup.start(rig.audio.mark(100))
        failed = await until(lambda: rig.of(SessionFailed), "the session to fail")
        assert failed[0].reason is FailureReason.INTERNAL
        assert "exited with code 7" in failed[0].detail
        assert failed[0].retry_in_s is None
        rig.events.clear()
        await rig.session()  # a fresh child serves the next press
    finally:
        await rig.sup.aclose()


async def test_a_child_that_stops_answering_is_killed_its_session_fails_and_the_next_press_works(
        tmp_path, monkeypatch, caplog) -> None:
    marker = tmp_path / "hang"
    marker.touch()
    monkeypatch.setenv("VD_FAKE_HANG", str(marker))
    rig = Rig(process_hang_s=2.0)  # session.process_hang_s (10 s by default)
    try:
        rig.audio.speak(300)
        await rig.sup.start(rig.audio.mark(100))
        pid = rig.sup.status().process.pid
        failed = await until(lambda: rig.of(SessionFailed), "the hung session to fail")
        assert failed[0].reason is FailureReason.INTERNAL and "stopped answering" in failed[0].detail
        silent = [float(r.getMessage().rsplit("silent_s=", 1)[1]) for r in caplog.records
                  if "stopped answering; killing it" in r.getMessage()]
        assert silent and 2.0 <= silent[0] < 5.0, silent  # the configured limit, not the 10 s default
        await until(lambda: not alive(pid), "the hung process to be gone")
        await rig.sup.end()  # the device's own end after the failure: no error, no wait
        rig.events.clear()
        await rig.session()
    finally:
        await rig.sup.aclose()


async def test_a_start_queued_behind_the_end_of_a_session_starts_in_a_fresh_child() -> None:
    # end and start back to back: the start reaches the old child before its session is over; that child is
    # retired with it, so the start is made again in a fresh child and the device is not left connecting
    rig = Rig()
    try:
        first = await rig.session()
        rig.audio.speak(300)
        await rig.sup.start(rig.audio.mark(100))
        await until(rig.listening, "agent listening")
        second = rig.sup.status().process.pid
        rig.events.clear()
        await asyncio.gather(rig.sup.end("requested"), rig.sup.start(rig.audio.mark(100)))
        await until(rig.listening, "agent listening in the new session")
        third = rig.sup.status().process.pid
        assert len({first, second, third}) == 3
        assert rig.sup.status().phase != "idle"
    finally:
        await rig.sup.aclose()


async def crashed_always_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Rig, list[SessionFailed]]:
    """An always_on session whose process crashed (the hostfactory child exits while the marker file exists):
    the rig, and the failure it reported (a restart is armed after its back-off)."""
    marker = tmp_path / "crash"
    marker.touch()
    monkeypatch.setenv("VD_FAKE_CRASH", str(marker))
    rig = Rig(mode="always_on", idle_timeout_s=0.0, max_session_s=0.0)
    try:
        rig.audio.speak(300)
        await rig.sup.start(rig.audio.mark(100))
        return rig, await until(lambda: rig.of(SessionFailed), "the session to fail")
    except BaseException:
        await rig.sup.aclose()
        raise


async def test_always_on_after_a_child_dies_starts_again_in_a_new_one_by_itself(tmp_path, monkeypatch) -> None:
    rig, failed = await crashed_always_on(tmp_path, monkeypatch)
    try:
        assert failed[0].retry_in_s is not None and failed[0].retry_in_s > 0  # shown as "retrying"
        process = rig.sup.status().process
        assert process is not None and process.lost == 1  # counted (the metrics' lost session processes)
        await until(rig.listening, "a new session without a press")
    finally:
        await rig.sup.aclose()


async def test_always_on_an_end_during_the_restart_back_off_opens_no_room(tmp_path, monkeypatch) -> None:
    """The room the user cannot see: a crashed always_on session arms a restart; `ctl end` during its back-off
    reaches no process, and must still cancel the restart (the device shows idle: no room may open behind it)."""
    rig, failed = await crashed_always_on(tmp_path, monkeypatch)
    try:
        retry = failed[0].retry_in_s
        assert retry is not None
        await rig.sup.end("control")
        started = rig.sup.status().process.started
        await asyncio.sleep(retry + 2.0)  # past the restart it had armed, with time for a child to join
        assert not rig.listening(), rig.events
        assert rig.sup.status().phase == "idle" and rig.sup.current is None
        assert rig.sup.status().process.started <= started + 1  # at most the warm spare, never a session
    finally:
        await rig.sup.aclose()


async def test_always_on_a_restart_right_after_an_unmute_sends_nothing_captured_while_muted(
        tmp_path, monkeypatch, caplog) -> None:
    """Mute means mute, across a lost session process: while an always_on restart waits out its back-off, the user
    mutes, says something, unmutes; the restart then starts the new session from its pre-roll (500 ms back), which
    must not reach back past the unmute (the daemon's marks, `session/marks.py`, clamp the starts it asks for and this
    one, the supervisor's own)."""
    caplog.set_level(logging.INFO)
    rig, failed = await crashed_always_on(tmp_path, monkeypatch)
    try:
        assert failed[0].retry_in_s is not None and failed[0].retry_in_s > 0
        await rig.sup.set_muted(True)  # during the back-off: it reaches no process
        rig.audio.speak(300)  # said while muted
        rig.marks.unmuted()  # as the daemon does when its machine unmutes
        await rig.sup.set_muted(False)
        unmuted_at = rig.audio.produced
        await until(rig.listening, "the restarted session")
        rig.audio.speak(200)
        await asyncio.sleep(0.3)
        await rig.sup.end("requested")
        line = (await until(lambda: sent_lines(caplog), "the restarted child's report of what it sent"))[-1]
        assert int(line["first"]) >= unmuted_at, f"the restart sent {unmuted_at - int(line['first'])} samples " \
                                                 "captured while muted"
    finally:
        await rig.sup.aclose()


async def test_closing_while_a_press_waits_for_a_starting_child_ends_the_press_quietly() -> None:
    # a reload (aclose) during a press that waits for its child: the daemon's effect worker must not get a
    # CancelledError (it would stop for good)
    rig = Rig(warm=False)
    rig.audio.speak(300)
    press = asyncio.get_running_loop().create_task(rig.sup.start(rig.audio.mark(100)))
    await asyncio.sleep(0.1)
    await rig.sup.aclose()
    await asyncio.wait_for(press, 5)  # returns, does not raise
    assert not press.cancelled()


async def test_a_child_that_cannot_start_fails_the_press_with_a_sentence_and_no_traceback(caplog) -> None:
    rig = Rig(factory="tests.session.hostfactory:no_such_factory", warm=False)
    try:
        rig.audio.speak(300)
        await rig.sup.start(rig.audio.mark(100))  # does not raise: the device shows failed(internal)
        failed = rig.of(SessionFailed)
        assert len(failed) == 1 and failed[0].reason is FailureReason.INTERNAL
        assert "could not start" in failed[0].detail and "no_such_factory" in failed[0].detail
        assert rig.sup.status().phase == "idle"
        await rig.sup.end()  # nothing running: a no-op, not an error
    finally:
        await rig.sup.aclose()


async def test_the_status_shown_before_any_child_is_the_supervisors_idle_status(make_rig) -> None:
    # idle_status() stands in for Supervisor.status() while no child exists: it must not drift from it
    from device.session.process.child import idle_status

    for mode in ("push_to_talk", "toggle", "always_on"):
        rig = make_rig(mode=mode)
        assert idle_status(rig.sup._cfg) == replace(rig.sup.status(), identity=None), mode


@pytest.mark.parametrize(("source", "warmed"), [("local", "livekit.api,aiohttp"), ("literal", "")])
async def test_a_ready_child_has_already_imported_what_its_token_source_needs(caplog, source: str,
                                                                              warmed: str) -> None:
    # livekit.api (minting) costs ~0.3 s to import: paid before the press, not after it
    caplog.set_level(logging.INFO)
    cfg = make_config()
    lk = dataclasses.replace(cfg.livekit, token_source=source, api_key="devkey", api_secret="x" * 32)
    rig = Rig(config=dataclasses.replace(cfg, livekit=lk))
    try:
        await until(lambda: [r for r in caplog.records if "fake: built with modules" in r.getMessage()],
                    "the child's report")
        line = next(r.getMessage() for r in caplog.records if "fake: built with modules" in r.getMessage())
        assert line.split("modules ")[1].strip() == warmed
    finally:
        await rig.sup.aclose()


async def test_on_demand_starts_no_child_until_the_press() -> None:
    rig = Rig(warm=False)
    try:
        await asyncio.sleep(0.5)
        assert rig.sup.status().process == ProcessStatus(pid=None, started=0)
        await rig.session()
        assert rig.sup.status().process.started == 1
    finally:
        await rig.sup.aclose()


async def test_close_ends_the_running_session_and_leaves_no_process(caplog) -> None:
    caplog.set_level(logging.INFO)
    rig = Rig()
    await asyncio.sleep(0)
    rig.audio.speak(300)
    await rig.sup.start(rig.audio.mark(100))
    await until(rig.listening, "agent listening")
    pid = rig.sup.status().process.pid
    await rig.sup.aclose()
    assert not alive(pid)
    assert sent_lines(caplog), "the room was disconnected (CLIENT_INITIATED) before the child exited"
    with pytest.raises(Exception, match="closed"):
        await rig.sup.start(0)


async def test_while_an_interruption_is_on_its_way_the_agents_audio_already_sent_is_dropped_too() -> None:
    from device.session.process.child import Child
    from device.session.process.protocol import Play

    audio = FakeAudioPort(sample_rate=16000)
    sup = RemoteSupervisor(make_config(mode="wake_word"), audio, lambda e: None, warm=False)
    try:
        child = Child(sup)
        sup.current = child
        frame = Play(np.zeros(320, np.int16).tobytes(), 16000, 1, 320)
        child._handle(frame)
        assert len(audio.player.frames) == 1
        sup.interrupting = True  # sent InterruptCall, no reply yet: what arrives was sent before the child took it
        child._handle(frame)
        assert len(audio.player.frames) == 1
        await sup.interrupt()  # no child running a session: nothing to tell, and the drop ends with the call
        assert not sup.interrupting
        child._handle(frame)
        assert len(audio.player.frames) == 2
    finally:
        await sup.aclose()


def test_the_spare_child_looks_at_its_status_once_a_second_and_a_session_ten_times() -> None:
    from device.session.process.host import BEAT_EVERY_S, STATUS_EVERY_S, status_every

    assert status_every(False) == BEAT_EVERY_S == 1.0
    assert status_every(True) == STATUS_EVERY_S == 0.1
