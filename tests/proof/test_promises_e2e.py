"""The device's promises end to end (issue 21): tests/promises/test_model.py's invariants, on fewer sequences, for
the REAL daemon.

`voice-device run --simulate` with its real session processes (`session.process: warm`), the virtual audio rig as
its sound card and the stub SFU in the test namespace as the server. The stub is the witness: what its agent
received (`session-N/heard.wav`, `preconnect.raw`), which rooms the device joined and whether it is still in one.
For each mode a seeded random sequence (the seed is fixed and printed) of what a user and a bad day do: the mode's
trigger, speech, `ctl mute`, `ctl unmute`, SIGKILL of the current session process at a random moment, `ctl end`,
time passing, in three seeded episodes (a session muted midway, a session whose process is killed, a trigger while
muted). Every mode also gets `ctl end` right after a start that waits for its session process (the warm spare killed
just before), and always_on the audit's "room the user cannot see" (SIGKILL, `ctl end` 0.3 s later, then as long as
the restart it had armed would take). After every step, with the stub as the witness:

- mute means mute: nothing said while muted reached the stub. What is said while muted is a two-tone chord no
  other sound here has (SECRET_HZ); what is said unmuted is another (PUBLIC_HZ), and each sequence first proves
  that the detector finds the public chord in what the stub recorded, through the codec (the check can fail);
- an end is an end: after `ctl end` (or once the device shows no session) no join of the device into a room it did
  not know at that moment appears at the stub until a new trigger (a connect in flight at the end may still land
  in its own room: the room the status or the log named before the end);
- shown is what is: while the device shows idle, muted with no session, or (outside always_on, which retries)
  failed, it is in no room at the stub, once the teardown has had its grace (the stub showing the device gone, not
  a sleep); while it shows a joined session (buffering, an agent state), it is in one. A session process killed
  with SIGKILL leaves no leave request: its signal connection closes, and the stub keeps the participant for a
  resume (20 s) that can never come; "in a room" here is "connected" at the stub.

What the stub cannot show: audio the device sends before its agent subscribes (a real SFU would receive it; the
stub's agent records from its subscription on, and the device routes nothing live before it).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.programs import need
from tests.stubsfu.netns import NetNs
from tests.wire.conftest import netns  # noqa: F401  (the module-scoped namespace fixture)
from tests.wire.daemon import Daemon, daemon_config, launch_daemon, wait_for
from tests.wire.harness import Stub, launch_stub
from tests.wire.rig import play_into_mic
from tests.wire.signals import RATE, read_wav, speech, write_wav

pytestmark = [pytest.mark.wire, pytest.mark.audio, pytest.mark.slow]

SEEDS = {"always_on": 2101, "push_to_talk": 2102, "wake_word": 2103}
SECRET_HZ = (1150.0, 1850.0)  # said while muted: must never reach the stub
PUBLIC_HZ = (650.0, 2650.0)  # said unmuted
WINDOW = RATE // 50  # 20 ms: 50 Hz bins, every chord frequency on a bin
LEAK_MS = 100  # this much of a chord in a row is the chord
JOINED_STATES = ("pre-connect-buffering", "initializing", "listening", "thinking", "speaking")
SESSION_STATES = ("connecting", "pre-connect-buffering", "initializing", "listening", "thinking", "speaking",
                  "reconnecting")
NO_EARCONS = {name: None for name in ("listening", "stopped", "error", "wake", "conversation_end")}


# ---- sounds and the detector ----------------------------------------------------------------------------------


def chord(freqs: tuple[float, ...], seconds: float = 1.2, amplitude: float = 9000.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * f * t) for f in freqs) * amplitude
    ramp = RATE // 100
    envelope = np.ones(len(t))
    envelope[:ramp] = np.linspace(0, 1, ramp)
    envelope[-ramp:] = np.linspace(1, 0, ramp)
    return np.concatenate([np.zeros(RATE // 20), x * envelope]).astype(np.int16)


def chord_ms(samples: np.ndarray, freqs: tuple[float, ...]) -> int:
    """The longest run (ms) of 20 ms windows where each of `freqs` holds a fifth of the window's energy or more."""
    n = len(samples) // WINDOW
    if n == 0:
        return 0
    frames = samples[: n * WINDOW].reshape(n, WINDOW).astype(np.float64)
    loud = np.sqrt(np.mean(frames ** 2, axis=1)) > 300.0
    power = np.abs(np.fft.rfft(frames * np.hanning(WINDOW), axis=1)) ** 2
    total = power.sum(axis=1) + 1e-9
    hit = loud.copy()
    for f in freqs:
        k = round(f * WINDOW / RATE)
        hit &= power[:, k - 2:k + 3].sum(axis=1) / total > 0.2
    best = run = 0
    for h in hit:
        run = run + 1 if h else 0
        best = max(best, run)
    return best * 1000 * WINDOW // RATE


@dataclass
class Sounds:
    secret: Path
    public: Path
    wake: Path
    secret_wake: Path  # the wake phrase, then the secret: what a muted user says to a muted smart speaker
    reply: Path


@pytest.fixture(scope="module")
def sounds(tmp_path_factory: pytest.TempPathFactory) -> Sounds:
    need("espeak-ng", "sox", "paplay")
    d = tmp_path_factory.mktemp("promises-sounds")
    wake = speech("okay nabu, what time is it", voice="en-us")
    return Sounds(secret=write_wav(d / "secret.wav", chord(SECRET_HZ)),
                  public=write_wav(d / "public.wav", chord(PUBLIC_HZ)),
                  wake=write_wav(d / "wake.wav", wake),
                  secret_wake=write_wav(d / "secret-wake.wav", np.concatenate([wake, chord(SECRET_HZ)])),
                  reply=write_wav(d / "reply.wav", speech("Sure, noted.", seed=5)))


# ---- the bench: one stub, one daemon, the witness's view ------------------------------------------------------


@dataclass
class Marker:
    """From here on no join into a room not in `known`, until a new trigger."""

    why: str
    joins: int
    known: set[str]


@dataclass
class Bench:
    mode: str
    stub: Stub
    daemon: Daemon
    sounds: Sounds
    rng: random.Random
    pulse: str
    marker: Marker | None = None
    held: bool = False  # push_to_talk: the button is down
    log: list[str] = field(default_factory=list)

    # -- what the stub saw --

    def joins(self) -> list[dict[str, Any]]:
        return [e for e in self.stub.events("participant_joined") if not str(e["identity"]).startswith("agent")]

    def present(self) -> list[str]:
        """The rooms the device is connected in at the stub."""
        return [f"{room['name']}:{c['sid']}" for room in self.stub.control.state()["rooms"]
                for c in room["clients"] if c["connected"]]

    def heard(self, freqs: tuple[float, ...]) -> dict[str, int]:
        """ms of the chord in each file the stub's agent wrote (only those where it is)."""
        self.stub.control.flush()
        found = {}
        for directory in sorted(self.stub.record_dir.glob("session-*")):
            for name in ("heard.wav", "preconnect.raw"):
                path = directory / name
                if not path.exists():
                    continue
                if name.endswith(".wav"):
                    samples = read_wav(path)
                else:
                    raw = path.read_bytes()
                    samples = np.frombuffer(raw[: len(raw) - len(raw) % 2], dtype="<i2")
                if (ms := chord_ms(samples, freqs)) >= LEAK_MS:
                    found[f"{directory.name}/{name}"] = ms
        return found

    # -- what the device shows --

    def snapshot(self) -> dict[str, Any]:
        return self.daemon.snapshot()

    def no_session_shown(self, snap: dict[str, Any]) -> bool:
        state, finished = snap["state"], snap["flags"]["is_finished"]
        return state == "idle" or (state == "muted" and finished) or (
            state == "failed" and finished and self.mode != "always_on")  # only always_on retries by itself

    def in_session(self) -> bool:
        snap = self.snapshot()
        return snap["state"] in SESSION_STATES or (snap["state"] == "muted" and not snap["flags"]["is_finished"])

    def rooms_logged(self) -> set[str]:
        return set(re.findall(r"session connecting room=(\S+)", self.daemon.log()))

    def pid(self) -> int | None:
        process = self.snapshot()["session"].get("process") or {}
        return process.get("pid")

    def spare_pids(self) -> list[int]:
        """The daemon's session processes that serve no session (the warm spare)."""
        current = self.pid()
        daemon = self.daemon.process.proc.pid  # `ip netns exec` execs the daemon: the same process
        pids = []
        for task in Path(f"/proc/{daemon}/task").iterdir():
            with contextlib.suppress(OSError):
                pids += [int(p) for p in (task / "children").read_text().split()]
        out = []
        for pid in pids:
            with contextlib.suppress(OSError):
                if b"device.session.process.host" in Path(f"/proc/{pid}/cmdline").read_bytes() and pid != current:
                    out.append(pid)
        return out

    # -- the promises --

    def set_marker(self, why: str, extra: set[str] | None = None) -> None:
        joins = self.joins()
        known = {str(e.get("room")) for e in joins} | self.rooms_logged() | (extra or set())
        self.marker = Marker(why, len(joins), known)

    def check_end(self, step: str) -> None:
        """An end is an end: since the marker, no join into a room unknown then."""
        if self.marker is not None:
            new = [e for e in self.joins()[self.marker.joins:] if e.get("room") not in self.marker.known]
            assert not new, (f"after {step}: the device joined a new room after {self.marker.why} with no new "
                             f"trigger: {new}\nlog tail:\n{self.daemon.process.log_tail(30)}")

    def check(self, step: str) -> None:
        # mute means mute
        leaked = self.heard(SECRET_HZ)
        assert not leaked, f"after {step}: what was said while muted reached the stub: {leaked}"
        self.check_end(step)
        # shown is what is: no session shown, no room at the stub (after the teardown's grace); a joined session
        # shown (an agent state, or buffering for it), the device in a room (after the join's)
        deadline = time.monotonic() + 30.0
        while True:
            snap = self.snapshot()
            here = self.present()
            if self.no_session_shown(snap):
                if not here:
                    if self.marker is None:
                        self.set_marker(f"the device showed {snap['state']}")
                    break
            elif snap["state"] not in JOINED_STATES or here:
                break
            if time.monotonic() > deadline:
                where = f"is still in {here}" if here else "is in no room"
                raise AssertionError(f"after {step}: the device shows {snap['state']} and {where} at the stub 30 s "
                                     f"later\nlog tail:\n{self.daemon.process.log_tail(30)}")
            time.sleep(0.2)
        line = (f"[{self.mode}] {step:<22} state={snap['state']:<22} muted={snap['muted']!s:<5} "
                f"joins={len(self.joins())} present={len(self.present())} "
                f"marker={self.marker.why if self.marker else '-'}")
        self.log.append(line)
        print(line, flush=True)

    # -- the user and the bad day --

    def play(self, wav: Path) -> None:
        assert play_into_mic(self.pulse, wav).wait(timeout=30) == 0

    def speak(self) -> str:
        muted = self.snapshot()["muted"]
        self.play(self.sounds.secret if muted else self.sounds.public)
        return "speak (muted)" if muted else "speak"

    def mute(self, muted: bool) -> str:
        self.daemon.ctl("mute" if muted else "unmute")
        wait_for(lambda: self.snapshot()["muted"] is muted, 10, f"muted={muted} shown")
        if self.mode == "wake_word":
            wait_for(lambda: self.snapshot()["wake"]["listening"] is not muted, 10, "the wake listener to follow")
        return "mute" if muted else "unmute"

    def _started(self, mark: int) -> bool:
        """A session was shown since `mark` (or is now, behind `muted`)."""
        return any(s in SESSION_STATES for s in self.daemon.states()[mark:]) or self.in_session()

    def trigger(self) -> str:
        """The mode's trigger. Effective (a session may open: the marker goes) unless muted outside always_on."""
        snap = self.snapshot()
        muted, idle = snap["muted"], self.no_session_shown(snap) or snap["state"] == "failed"
        mark = self.daemon.mark()
        self.check_end("the next trigger")  # what came since the end, before the trigger's own room may come
        if self.mode == "always_on":
            self.marker = None
            self.daemon.ctl("start")
            name = "ctl start" + (" (muted)" if muted else "")
        elif self.mode == "push_to_talk":
            if not muted:
                self.marker = None
            self.daemon.ctl("press")
            self.held = True
            name = "press" + (" (muted)" if muted else "")
        else:
            if not idle and not muted:
                return "wake word (in a session: skipped)"
            if muted:
                self.play(self.sounds.secret_wake)  # nobody listens: nothing may open, nothing may leave
                return "wake word (muted)"
            self.marker = None
            self.play(self.sounds.wake)
            try:  # a detection comes up to a second after the phrase
                wait_for(lambda: self._started(mark), 3, "the wake word")
            except AssertionError:  # the model misses a phrase now and then: say it again
                self.play(self.sounds.wake)
            name = "wake word"
        if idle and not (muted and self.mode != "always_on"):
            wait_for(lambda: self._started(mark), 20, f"{name} to start a session")
        return name

    def release(self) -> None:
        if self.held:
            self.daemon.ctl("release")
            self.held = False

    def kill(self, *, delay: bool = True) -> str:
        """SIGKILL the current session process at a random moment (the warm spare when there is none)."""
        if delay:
            time.sleep(self.rng.uniform(0.0, 2.0))  # connecting, waiting for the agent, or in the session
        pid = self.pid()
        if pid is None:
            spares = self.spare_pids()
            for spare in spares:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(spare, signal.SIGKILL)
            return f"SIGKILL spare {spares}"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: self.pid() != pid, 20, "the daemon to notice its session process died")
        return f"SIGKILL session {pid}"

    def end(self) -> str:
        room = self.snapshot()["session"].get("room")  # a connect in flight may still land in this one
        self.daemon.ctl("end")
        self.release()
        self.set_marker("ctl end", {room} if room else None)
        return "ctl end"

    def kill_then_end(self) -> str:
        """The audit's room the user cannot see (always_on): SIGKILL, `ctl end` 0.3 s later, then as long as the
        restart the crash armed would take (its new session process ready, and more)."""
        if not self.in_session() or self.pid() is None:
            self.trigger()
            wait_for(lambda: self.pid() is not None and self.present(), 30, "a session to kill")
        ready = self.daemon.log().count("session process ready")
        self.kill(delay=False)
        time.sleep(0.3)
        self.end()
        wait_for(lambda: self.daemon.log().count("session process ready") > ready, 40,
                 "the next session process (the one a restart would use)")
        time.sleep(4.0)  # a restart would have joined by now: its process is ready, a join takes about a second
        return "SIGKILL + ctl end 0.3 s"

    def ready_spare(self) -> bool:
        log = self.daemon.log()
        return any(f"session process ready pid={pid}" in log for pid in self.spare_pids())

    def settled(self) -> int:
        """How many session processes became ready, or failed a start that waited for them, so far."""
        log = self.daemon.log()
        return log.count("session process ready") + log.count("session process unavailable")

    def end_while_starting(self) -> str:
        """`ctl end` right after a trigger whose session process is still starting (the warm spare killed just
        before): the start must be called off, not go on into a room once its process is ready."""
        if not self.no_session_shown(self.snapshot()):
            self.end()
            self.check("(the step's own) ctl end")
        if self.snapshot()["muted"]:
            self.mute(False)
        # the warm spare, ready: killed, the start has to wait for a new one (a spare killed while it is still
        # starting fails the press instead: the device shows failed, and nothing can join)
        wait_for(self.ready_spare, 40, "a ready warm spare")
        ready = self.settled()
        killed = self.kill(delay=False)
        self.check_end("the next trigger")
        self.marker = None
        # `ctl start` in wake_word too: the same StartSession as a wake phrase's, without the phrase's second and a
        # half (by then the new process would be ready, and the end would find a connect in flight instead)
        self.daemon.ctl("press" if self.mode == "push_to_talk" else "start")
        self.held = self.mode == "push_to_talk"
        self.end()
        # the process the start waited for is ready (or could not start: the press failed, and nothing is left
        # to join); a start that went on would then join within a second or so
        wait_for(lambda: self.settled() > ready, 40, "the session process the start waited for")
        time.sleep(4.0)
        return f"{killed} + trigger + ctl end"

    def step(self, name: str) -> str:
        match name.split("+"):
            case ["trigger", *held]:  # push_to_talk: hold, do what follows while holding, release
                done = self.trigger()
                for inner in held:
                    done += " + " + {"speak": self.speak, "mute": lambda: self.mute(True), "kill": self.kill}[inner]()
                if self.held:
                    self.release()
                    done += " + release"
                return done
            case ["speak"]:
                return self.speak()
            case ["mute"]:
                return self.mute(True)
            case ["unmute"]:
                return self.mute(False)
            case ["kill"]:  # a session's process: one is started first when none runs (and one can be)
                if self.pid() is None and (self.mode == "always_on" or not self.snapshot()["muted"]):
                    return self.step("trigger+kill")
                return self.kill()
            case ["end"]:
                return self.end()
            case ["wait"]:
                time.sleep(3.0)
                return "wait 3 s"
            case ["kill_then_end"]:
                return self.kill_then_end()
            case ["end_while_starting"]:
                return self.end_while_starting()
        raise AssertionError(name)


def sequence(mode: str, rng: random.Random) -> list[str]:
    """Three episodes in a seeded order, each with a seeded variation: a session muted midway, a session whose
    process is killed, a trigger while muted; and the special steps at seeded places."""
    ptt = mode == "push_to_talk"
    muted_midway = ["trigger+speak+mute+speak" if ptt else "trigger", *([] if ptt else ["mute", "speak"]),
                    *rng.choice([["unmute", "end"], ["end", "unmute"], ["unmute", "wait"]])]
    crash = [rng.choice(["trigger+kill", "trigger+speak"]) if ptt else "trigger",
             *rng.choices(["speak", "wait"], k=rng.randint(0, 1)), "kill", rng.choice(["end", "wait", "speak"])]
    if crash[0] == "trigger+kill":
        crash.remove("kill")
    muted_trigger = ["mute", "trigger+speak" if ptt else "trigger", "speak", "unmute"]
    episodes = [muted_midway, crash, muted_trigger]
    rng.shuffle(episodes)
    steps = [step for episode in episodes for step in episode]
    steps.insert(rng.randrange(len(steps) + 1), "end_while_starting")
    if mode == "always_on":
        steps.insert(rng.randrange(len(steps) + 1), "kill_then_end")
    return steps


CONFIG: dict[str, dict[str, Any]] = {
    "always_on": {"session": {"mode": "always_on"}},
    "push_to_talk": {"session": {"mode": "push_to_talk", "idle_timeout_s": 8}},
    "wake_word": {"session": {"mode": "wake_word"}, "wake_word": {"models": ["okay_nabu"], "follow_up_s": 5}},
}


@pytest.fixture
def bench(netns: NetNs, audio_rig: Any, sounds: Sounds, tmp_path: Path) -> Iterator[Any]:  # noqa: F811
    started: list[Bench] = []

    def go(mode: str, seed: int) -> Bench:
        stub = launch_stub(netns, tmp_path, "--agent-delay", "0.5", "--agent-reply", str(sounds.reply),
                           *(("--ptt",) if mode == "push_to_talk" else ()))
        try:
            sections = CONFIG[mode]
            cfg = daemon_config(tmp_path / "daemon.yaml", url=stub.url, socket=tmp_path / "ctl.sock",
                                agent_connect_timeout_s=15,
                                audio={"earcons": NO_EARCONS},
                                session={**sections["session"], "process": "warm"},
                                **{k: v for k, v in sections.items() if k != "session"})
            daemon = launch_daemon(netns, tmp_path, cfg, audio_rig.pulse_server)
        except BaseException:
            stub.process.stop()
            raise
        b = Bench(mode, stub, daemon, sounds, random.Random(seed), audio_rig.pulse_server)
        started.append(b)
        return b

    yield go
    for b in started:
        b.daemon.process.stop()
        b.stub.process.stop()


def prologue(b: Bench) -> None:
    """A session that hears the public chord: the detector finds it at the stub (so a leak would be found)."""
    if b.mode == "always_on":
        b.daemon.wait_state("listening", timeout=40)
    else:
        if b.mode == "wake_word":
            wait_for(lambda: b.snapshot()["wake"]["listening"], 20, "the wake-word listener")
        b.trigger()
        b.daemon.wait_state("listening", timeout=40)
    b.speak()
    b.release()
    heard = wait_for(lambda: b.heard(PUBLIC_HZ), 20, "the public chord at the stub")
    assert not b.heard(SECRET_HZ)
    b.check(f"prologue (heard {heard})")


@pytest.mark.parametrize("mode", list(SEEDS))
def test_the_promises_hold_end_to_end_under_a_seeded_sequence(bench: Any, mode: str) -> None:
    seed = SEEDS[mode]
    rng = random.Random(seed)
    steps = sequence(mode, rng)
    print(f"\n[{mode}] seed={seed} steps={steps}", flush=True)
    b = bench(mode, seed)
    started = time.monotonic()
    prologue(b)
    for i, name in enumerate(steps, 1):
        done = b.step(name)
        b.check(f"{i}. {done}")
    time.sleep(2.0)  # what was in flight arrives
    b.check("end of sequence")
    print(f"[{mode}] {len(steps)} steps in {time.monotonic() - started:.0f} s", flush=True)
    # the sequence did what it is for (a session process killed, speech while muted), and the daemon is whole
    assert any("SIGKILL session" in line for line in b.log) and any("speak (muted)" in line for line in b.log)
    assert b.daemon.stop() == 0
    assert "Traceback" not in b.daemon.log()
