"""The device's promises, checked against every sequence of events hypothesis can find (its stateful testing).

What runs is the real daemon's decision path: `App` (its one event path `feed`, its effect worker `_execute` and
its control commands `handle`), the device machine and its timers, the in-process session `Supervisor` with its
policy and mic uplink. What stands in is what the unit tests use: a fake room per session (tests/session/fakes.py),
fake tokens and media, a fake ring and one fake clock. The rules are the inputs a device meets (presses and
gestures, the mute button, the wake word, `ctl start|end|mute|unmute`, the agent joining, changing state and
leaving, network loss and return, a refused token, time passing, a restart with the state file kept), in every
mode. After every step the promises are asserted (README, "What the device promises"):

- P1 privacy: no sample captured while the device was muted ever reaches a room (pre-connect stream or live track);
- P2 shown is what is: a room is joined only while the device shows a session (connecting, buffering, an agent
  state, reconnecting), and never one opened while muted (outside always_on, whose room is permanent);
- P3 an end is an end: after an explicit end no room is opened until a new trigger;
- P4 mute survives a restart;
- P5 nothing twice: within each stream a room receives, no captured sample arrives twice.

CI runs `VD_MODEL_EXAMPLES` (default 150) examples of up to 40 steps per mode (about a minute in all); the soak
raises it (`VD_MODEL_EXAMPLES=2000 pytest tests/promises`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from livekit import rtc

from device.config.schema import BackoffConfig, Config, DaemonConfig
from device.controls.machine import Down
from device.controls.timers import LoopTimers
from device.core.modes import MODES
from device.core.vocabulary import (
    DeviceState,
    DoublePressed,
    EndSession,
    FailureReason,
    LongPressed,
    MuteRequested,
    Pressed,
    Released,
    StartRequested,
    StartSession,
    StartTurn,
    WakeWordHeard,
)
from device.daemon.app import App
from device.daemon.commands import Command
from device.daemon.control import ControlError
from device.session.supervisor import Supervisor
from device.session.tokens import TokenError
from tests.daemon.fakeparts import FakeParts
from tests.session.conftest import make_config
from tests.session.fakes import FakeAudioPort, FakeClock, FakeMedia, FakeTokens, Rooms, settle

EXAMPLES = int(os.environ.get("VD_MODEL_EXAMPLES", "150"))
SECRET = -7777  # every sample captured while muted; no room may ever receive this value
BLOCK = 4  # an unmuted sample's value is 1 + (its ring index // BLOCK) modulo WRAP: unique over 8 s at 16 kHz
WRAP = 32000
BACK = 200  # blocks: 50 ms


class Mic(FakeAudioPort):
    """The ring as the daemon's engine fills it: unmuted samples carry their index, muted ones the secret."""

    def capture(self, ms: int, *, muted: bool) -> None:
        n = self.sample_rate * ms // 1000
        if muted:
            self._append(np.full(n, SECRET, np.int16))
        else:
            index = np.arange(self.produced, self.produced + n)
            self._append((1 + (index // BLOCK) % WRAP).astype(np.int16))

    def play_earcon(self, name: str) -> None:
        pass


class Arrivals:
    """One stream as its room received it, read incrementally (a long session is checked once, not every step)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.items = 0  # chunks (a byte stream) or frames (a live track) already looked at
        self.total = 0  # samples
        self.last = 0  # the last block value seen (0: none yet)
        self.run = 0  # how many samples in a row carried it

    def take(self) -> np.ndarray:
        items = self.stream.chunks if hasattr(self.stream, "chunks") else self.stream.frames
        new = items[self.items:]
        self.items = len(items)
        if not new:
            return np.zeros(0, np.int16)
        if hasattr(self.stream, "chunks"):
            data = np.frombuffer(b"".join(new), dtype="<i2")
        else:
            data = np.concatenate([np.frombuffer(bytes(f.data), dtype="<i2") for f in new])
        self.total += len(data)
        return data

    def check_forward(self, new: np.ndarray) -> None:
        values = new[new > 0].astype(np.int64)
        if not len(values):
            return
        values = np.concatenate([[self.last], values]) if self.last else values
        change = np.flatnonzero(np.diff(values)) + 1
        bounds = np.concatenate([[0], change, [len(values)]])
        runs = np.diff(bounds)
        runs[0] += self.run - (1 if self.last else 0)
        assert runs.max() <= BLOCK, "a stretch of audio reached the same stream twice"
        steps = np.diff(values[bounds[:-1]] - 1) % WRAP
        assert not np.any(steps > WRAP - BACK), "audio reached the same stream twice (a step back)"
        self.last, self.run = int(values[-1]), int(runs[-1])


class ClockLoop:
    """The machine's timers (LoopTimers) on the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def call_later(self, delay: float, fn: Any, *args: Any) -> Any:
        return self.clock.call_later(delay, lambda: fn(*args))


def model_config(mode: str, *, preconnect: bool, dispatched: bool, state_dir: str) -> Config:
    base = make_config(agent_name="test-agent" if dispatched else None, mode=mode, preconnect=preconnect,
                       idle_timeout_s=8.0, max_session_s=60.0, connect_timeout_s=5.0,
                       agent_connect_timeout_s=6.0, backoff=BackoffConfig(base_s=0.5, cap_s=2.0, attempts=2))
    return replace(base, daemon=DaemonConfig(state_dir=state_dir, control_socket=str(Path(state_dir) / "ctl.sock")))


class Promises(RuleBasedStateMachine):
    mode: str

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory(prefix="vd-model-")
        self.app: App | None = None

    # ---- the world -------------------------------------------------------------------------------------------

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _settle(self) -> None:
        await settle(40)
        assert self.parts is not None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.parts.supervisor.wait_quiet(), 1.0)
        await settle(40)

    async def _advance(self, seconds: float) -> None:
        self.clock.advance(seconds)  # timers fire inside the loop, as they do on the daemon's
        await self._settle()

    @property
    def parts(self) -> FakeParts | None:
        return self.app.parts if self.app is not None else None  # type: ignore[return-value]

    def _boot(self) -> None:
        """What the daemon's start-up does (`App._bring_up`), on the fakes."""

        async def boot() -> None:
            app = App(self.config, str(Path(self.tmp.name) / "model.yaml"))
            self.app = app
            supervisor = Supervisor(self.config, self.audio, app.feed, room_factory=self.rooms,
                                    token_source=self.tokens, clock=self.clock, media=self.media,
                                    rng=random.Random(len(self.boots)), wall=lambda: self.tokens.now)
            timers = LoopTimers(ClockLoop(self.clock), app.feed)  # type: ignore[arg-type]
            app.parts = FakeParts(self.config, self.audio, supervisor, timers)  # type: ignore[assignment]
            app._effect_worker = asyncio.get_running_loop().create_task(app._run_effects())
            original = app._execute

            async def execute(effect: Any) -> None:  # the witness of what the daemon did, then the real thing
                snap = app.parts.snapshot  # type: ignore[union-attr]
                if isinstance(effect, StartSession | StartTurn):
                    if snap.muted and not snap.profile.mode.keeps_session and isinstance(effect, StartSession):
                        self.started_muted.append(effect)
                    self.ended_explicitly = False
                    self.rooms_at_end = None
                if isinstance(effect, EndSession):
                    self.ended_explicitly = True
                    self.rooms_at_end = len(self.rooms.made)
                await original(effect)

            app._execute = execute  # type: ignore[method-assign]
            if app.muted:
                app.feed(MuteRequested(True))
            if self.config.session.profile.starts_at_boot:
                app.feed(StartRequested())
            await self._settle()

        self.boots.append(len(self.boots))
        self.run(boot())

    def _shutdown(self) -> None:
        app = self.app
        if app is None:
            return

        async def down() -> None:
            assert app.parts is not None
            task = asyncio.ensure_future(app.parts.supervisor.aclose())
            for _ in range(300):
                if task.done():
                    break
                self.clock.advance(1.0)
                await settle()
            await asyncio.wait_for(task, 5)
            app.parts.timers.close()
            if app._effect_worker is not None:
                app._effect_worker.cancel()
                await asyncio.gather(app._effect_worker, return_exceptions=True)

        self.run(down())
        self.app = None

    def teardown(self) -> None:
        try:
            self._shutdown()
        finally:
            self.loop.close()
            self.tmp.cleanup()

    @initialize(preconnect=st.booleans(), dispatched=st.booleans())
    def start(self, preconnect: bool, dispatched: bool) -> None:
        self.config = model_config(self.mode, preconnect=preconnect, dispatched=dispatched, state_dir=self.tmp.name)
        self.clock = FakeClock()
        self.audio = Mic(sample_rate=16000)
        self.rooms = Rooms()
        self.tokens = FakeTokens()
        self.media = FakeMedia()
        self.boots: list[int] = []
        self.started_muted: list[Any] = []
        self.ended_explicitly = False
        self.rooms_at_end: int | None = None
        self.muted_before_restart: bool | None = None
        self.quiet_since: int | None = None
        self.arrivals: dict[int, Arrivals] = {}
        self.audio.capture(600, muted=False)  # the ring holds some past before anything happens
        self._boot()

    # ---- the rules: what a device meets ----------------------------------------------------------------------

    def _feed(self, event: Any) -> None:
        assert self.app is not None
        self.app.feed(event)
        self.run(self._settle())

    @property
    def snap(self) -> Any:
        assert self.parts is not None
        return self.parts.snapshot

    @rule(ms=st.sampled_from([20, 100, 300, 700]))
    def speak(self, ms: int) -> None:
        self.audio.capture(ms, muted=self.snap.muted)
        self.run(self._settle())

    @rule(gesture=st.sampled_from(["press", "release", "long", "double", "click"]))
    def main_button(self, gesture: str) -> None:
        events = {"press": [Pressed()], "release": [Released()], "long": [LongPressed()],
                  "double": [DoublePressed()], "click": [Pressed(), Released()]}[gesture]
        for ev in events:
            self._feed(ev)

    @rule()
    def mute_button(self) -> None:
        self._feed(Pressed("mute"))
        self._feed(Released("mute"))

    @rule(cmd=st.sampled_from(["start", "end", "mute", "unmute"]))
    def control(self, cmd: str) -> None:
        assert self.app is not None
        with contextlib.suppress(ControlError):
            self.run(self.app.handle(Command(cmd)))
        self.run(self._settle())

    @precondition(lambda self: MODES[self.mode].wake_word)
    @rule()
    def wake_word(self) -> None:
        # the real listener is stopped while muted; a detection already on its way still arrives
        end = self.audio.produced
        self._feed(WakeWordHeard("okay_nabu", 0.9, mark=max(0, end - 8000), phrase_end=end))

    def _room(self) -> Any:
        made = [r for r in self.rooms.made if r.connected]
        return made[-1] if made else None

    @rule(state=st.sampled_from([None, "initializing", "listening"]))
    def agent_joins(self, state: str | None) -> None:
        room = self._room()
        if room is None or any(p.identity == "agent-1" for p in room.remote_participants.values()):
            return
        room.agent_joins("agent-1", state=state)
        with contextlib.suppress(Exception):
            room.agent_subscribes_mic()
        self.run(self._settle())

    @rule(state=st.sampled_from(["listening", "thinking", "speaking", "initializing"]))
    def agent_state(self, state: str) -> None:
        room = self._room()
        agent = room.remote_participants.get("agent-1") if room is not None else None
        if agent is None:
            return
        room.set_agent_state(agent, state)
        self.run(self._settle())

    @rule(deliberate=st.booleans())
    def agent_leaves(self, deliberate: bool) -> None:
        room = self._room()
        agent = room.remote_participants.get("agent-1") if room is not None else None
        if agent is None:
            return
        reason = rtc.DisconnectReason.CLIENT_INITIATED if deliberate else rtc.DisconnectReason.UNKNOWN_REASON
        room.participant_leaves(agent, reason)
        self.run(self._settle())

    @rule()
    def the_server_answers(self) -> None:
        """The SFU's packets on the mic's connection (its link watch hears them at its next poll): audio sent live
        after the last of them is held again at a reconnect (session/uplink/link_watch.py)."""
        room = self._room()
        if room is not None:
            room.packets_received = (room.packets_received or 0) + 1

    @rule(kind=st.sampled_from(["resume", "full", "drop", "server-end"]))
    def network(self, kind: str) -> None:
        room = self._room()
        if room is None:
            return
        match kind:
            case "resume":
                room.emit("reconnecting")
                self.run(self._settle())
                room.emit("reconnected")
            case "full":
                with contextlib.suppress(Exception):
                    room.full_restart()
            case "drop":
                room.drop(rtc.DisconnectReason.SIGNAL_CLOSE)
            case "server-end":
                room.drop(rtc.DisconnectReason.ROOM_DELETED)
        self.run(self._settle())

    @rule()
    def a_conversation(self) -> None:
        """The path a user takes most (so that the search reaches the audio's paths often): the mode's trigger,
        speech, the agent joining and listening, more speech, a moment."""
        self.speak(300)
        if self.mode == "wake_word":
            self.wake_word()
        elif self.mode == "push_to_talk":
            self._feed(Pressed())
        elif self.mode == "toggle" and not self.snap.session_up:
            self._feed(Pressed())
            self._feed(Released())
        self.speak(300)
        self.agent_joins("listening")
        self.speak(300)
        if self.mode == "push_to_talk":
            self._feed(Released())
        self.time_passes(1.0)

    @rule()
    def token_refused(self) -> None:
        self.tokens.errors.append(TokenError(FailureReason.AUTH, "401: token refused"))

    @rule(seconds=st.sampled_from([0.2, 1.0, 3.0, 7.0, 15.0]))
    def time_passes(self, seconds: float) -> None:
        step = max(0.2, seconds / 8)
        for _ in range(round(seconds / step)):
            # the mic never stops: the ring fills as time passes
            self.audio.capture(round(step * 1000), muted=self.snap.muted)
            self.run(self._advance(step))

    @rule()
    def restart(self) -> None:
        """The daemon stops (SIGTERM) and starts again with its state directory kept."""
        self.muted_before_restart = self.snap.muted
        self._shutdown()
        self.audio = Mic(sample_rate=16000)  # a new process: its ring starts empty
        self._boot()

    # ---- the promises ----------------------------------------------------------------------------------------

    @invariant()
    def the_promises_hold(self) -> None:
        if self.app is None:
            return
        self.p1_and_p5_what_arrives()
        self.p1_nothing_reaches_a_room_while_muted_or_idle()
        self.p2_a_room_only_while_a_session_is_shown()
        self.p3_an_end_is_an_end()
        self.p4_mute_survives_a_restart()

    def _arrivals(self) -> list[tuple[Arrivals, np.ndarray]]:
        """What arrived in each stream (each pre-connect byte stream, each live track) since the last look."""
        objects: list[Any] = [w for r in self.rooms.made for w in r.local_participant.writers]
        objects += self.media.sources
        out = []
        for obj in objects:
            seen = self.arrivals.setdefault(id(obj), Arrivals(obj))
            out.append((seen, seen.take()))
        return out

    def p1_and_p5_what_arrives(self) -> None:
        """P1: no sample captured while muted reaches a room. P5: within a stream, what arrives moves forward
        through the ring: a step back (up to BACK blocks, 50 ms) is audio sent twice (a seam's overlap), a run of
        one block's value longer than the block is a repeat."""
        for seen, new in self._arrivals():
            assert not np.any(new == SECRET), "a sample captured while muted reached a room"
            seen.check_forward(new)

    def p1_nothing_reaches_a_room_while_muted_or_idle(self) -> None:
        """Between two steps that both ended muted (or idle, or failed for good), no sample arrived anywhere."""
        if self.app is None:
            return
        sent = sum(a.total for a in self.arrivals.values())
        quiet = self.snap.muted or isinstance(self.snap.link, Down) or (
            self.snap.state is DeviceState.FAILED and not self.snap.session_up
            and getattr(self.snap.link, "retry_in_s", None) is None)
        if self.quiet_since is not None and quiet:
            assert sent == self.quiet_since, (
                f"{sent - self.quiet_since} samples reached a room while the device showed {self.snap.state}")
        self.quiet_since = sent if quiet else None

    def p2_a_room_only_while_a_session_is_shown(self) -> None:
        if self.app is None:
            return
        assert not self.started_muted, f"a session was started while muted: {self.started_muted}"
        if self._room() is not None:
            assert self.snap.session_up, f"a room is joined while the device shows {self.snap.state}"
        if isinstance(self.snap.link, Down):
            assert self.parts is not None
            assert self.parts.supervisor.status().phase == "idle", "idle shown, a session running"

    def p3_an_end_is_an_end(self) -> None:
        if self.app is None or not self.ended_explicitly or self.rooms_at_end is None:
            return
        assert len(self.rooms.made) == self.rooms_at_end, "a room was opened after an end, with no new trigger"
        assert self._room() is None

    def p4_mute_survives_a_restart(self) -> None:
        if self.app is None or self.muted_before_restart is None:
            return
        assert self.snap.muted == self.muted_before_restart, "mute was lost across a restart"
        self.muted_before_restart = None


SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def machine_for(mode: str) -> type[Promises]:
    cls = type(f"Promises_{mode}", (Promises,), {"mode": mode})
    cls.TestCase.settings = SETTINGS  # type: ignore[attr-defined]
    return cls


@pytest.mark.parametrize("mode", list(MODES))
def test_the_promises_hold_under_any_sequence_of_events(mode: str) -> None:
    machine_for(mode).TestCase().runTest()


# ---- the counter-examples the search found, kept as named regressions ---------------------------------------------


def replay(mode: str, steps: list[tuple[str, dict[str, Any]]], *, preconnect: bool = True,
           dispatched: bool = True) -> None:
    state = machine_for(mode)()
    try:
        state.start(preconnect=preconnect, dispatched=dispatched)
        state.the_promises_hold()
        for name, kwargs in steps:
            getattr(state, name)(**kwargs)
            state.the_promises_hold()
    finally:
        state.teardown()


def test_regression_a_pre_roll_never_reaches_back_into_a_mute() -> None:
    """Found by the search: muted, the user speaks, unmutes and presses at once: the press's pre-roll (500 ms)
    reached back into what was captured while muted, and sent it."""
    replay("toggle", [("mute_button", {}), ("speak", {"ms": 300}), ("mute_button", {}),
                      ("main_button", {"gesture": "click"}), ("agent_joins", {"state": "listening"})])


def test_regression_a_mute_while_connecting_drops_the_buffer() -> None:
    """Found by the search (and the audit): muted while the room was being joined, the speech buffered before the
    mute reached the agent when it joined."""
    replay("always_on", [("speak", {"ms": 300}), ("mute_button", {}), ("agent_joins", {"state": None})],
           dispatched=False)


def test_regression_a_press_while_muted_opens_no_room() -> None:
    """The audit's room behind "muted": a press while muted dispatched an agent for a display showing muted."""
    replay("push_to_talk", [("mute_button", {}), ("main_button", {"gesture": "press"}), ("speak", {"ms": 300}),
                            ("agent_joins", {"state": "listening"})])
