"""A fleet on the cluster: enrolled devices' real daemons having staggered push-to-talk conversations (the kiosk:
press, speak, release, the agent answers, end) through the cluster while the run kills a node or a worker on a
schedule and brings it back. The accounting is tests/cluster/ledger.py's; this is the part that drives processes.

Each device hears its own virtual audio rig (tests/wire/rig.py), or all share one: then every phrase and every
agent's answer reaches every device's mic (a device's mic stays live after its release, so another device's
speech reaches its agent). A conversation is judged by its own device's states and the agent's recording of its
own room (the workers share one record folder).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.daemon.client import ClientError
from tests.cluster.cluster import Cluster
from tests.cluster.endpoint import TokenEndpoint
from tests.cluster.ledger import COMPLETED, FAILED, UNACCOUNTED, Conversation, Fault
from tests.livekit.network import DeviceSide
from tests.livekit.worker_proc import Worker
from tests.stubsfu.netns import NetNs
from tests.wire.daemon import Daemon, daemon_config, launch_daemon
from tests.wire.harness import ROOT
from tests.wire.rig import play_into_mic

GROUP = "kiosks"
JOIN_TIMEOUT_S = 120.0  # press → listening, through retries (5 attempts, up to 30 s apart) — a liveness bound
ANSWER_TIMEOUT_S = 30.0  # release → the agent speaking (it takes ~3 s; a kiosk's user would press again sooner)
HEARD_TIMEOUT_S = 15.0  # the answer given → the agent's recording shows the turn
END_TIMEOUT_S = 30.0
RELEASE_AFTER_S = 0.3  # the user lets go a moment after the last word
POLL_S = 0.25
GAVE_UP = "retry_in_s=never"  # the daemon's log line for a failure it will not retry (session/supervisor.py)
# a device's session config: a kiosk whose session ends at `ctl end` (no idle timer racing the driver), with the
# agent given as long as a loaded machine needs to join
KIOSK: dict[str, Any] = {"mode": "push_to_talk", "idle_timeout_s": 0, "agent_connect_timeout_s": 30}


def launch_enrolled(ns: NetNs, endpoint: TokenEndpoint, directory: Path, pulse_server: str, name: str, group: str,
                    **config: Any) -> Daemon:
    """The real daemon of device `name`, enrolled in `group` with its own credential, its tokens from the
    endpoint (what an enrolled device's env file makes of its config)."""
    stamp = time.monotonic_ns()
    livekit = {**endpoint.livekit_section(name, group), **config.pop("livekit", {})}
    path = daemon_config(directory / f"{name}-{stamp}.yaml", url="", socket=directory / f"{name}-{stamp}.sock",
                         livekit=livekit, **config)
    return launch_daemon(DeviceSide.of(ns), directory, path, pulse_server)


@contextlib.contextmanager
def audio_rigs(count: int) -> Iterator[list[str]]:
    """`count` private virtual audio rigs (scripts/virtual-audio.sh), one per device: their PULSE_SERVER values."""
    env = {k: v for k, v in os.environ.items() if k != "PULSE_SERVER"}
    script = str(ROOT / "scripts" / "virtual-audio.sh")
    folders: list[Path] = []
    try:
        for _ in range(count):
            folders.append(Path(tempfile.mkdtemp(prefix="vd-fleet-audio-")))
            subprocess.run(["bash", script, "start"], env={**env, "VOICE_DEVICE_AUDIO_DIR": str(folders[-1])},
                           check=True, capture_output=True, timeout=60)
        yield [f"unix:{folder}/native" for folder in folders]
    finally:
        for folder in folders:
            subprocess.run(["bash", script, "stop"], env={**env, "VOICE_DEVICE_AUDIO_DIR": str(folder)},
                           capture_output=True, timeout=60)
            shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class Planned:
    kind: str  # "node" or "worker"
    at_s: float
    down_s: float


@dataclass(frozen=True)
class Schedule:
    run_s: float  # no conversation starts after this; those under way finish
    faults: tuple[Planned, ...]
    gap_s: float = 4.0  # a device's pause between conversations (plus up to as much again, at random)
    seed: int = 25


@dataclass
class Device:
    name: str
    daemon: Daemon
    pulse_server: str  # the audio rig its daemon hears (one per device, or one shared by all)
    room: str | None = None  # the room of the conversation under way, once listening


@dataclass
class Fleet:
    cluster: Cluster
    workers: list[Worker]
    devices: list[Device]
    phrase: Path
    conversations: list[Conversation] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    _t0: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.monotonic() - self._t0

    def run(self, schedule: Schedule, progress: Callable[[str], None] = lambda _: None) -> float:
        """The whole run; returns its length (s). Faults in `schedule` order, each killed then restored."""
        self._t0 = time.monotonic()
        rng = random.Random(schedule.seed)
        stagger = (schedule.gap_s + 8.0) / max(1, len(self.devices))  # a conversation takes ~8 s plus its gap
        threads = [threading.Thread(target=self._loop, args=(d, i * stagger, schedule, random.Random(rng.random())),
                                    name=f"fleet-{d.name}", daemon=True) for i, d in enumerate(self.devices)]
        for t in threads:
            t.start()
        for planned in schedule.faults:
            time.sleep(max(0.0, planned.at_s - self.now()))
            fault = self._inflict(planned, progress)
            with self._lock:
                self.faults.append(fault)
        for t in threads:
            t.join()
        return self.now()

    def _loop(self, device: Device, delay: float, schedule: Schedule, rng: random.Random) -> None:
        time.sleep(delay)
        while self.now() < schedule.run_s and device.daemon.process.proc.poll() is None:
            c = self.converse(device)
            with self._lock:
                self.conversations.append(c)
            time.sleep(schedule.gap_s * (1 + rng.random()))

    # -- one conversation --------------------------------------------------------------------------------------

    def converse(self, device: Device) -> Conversation:
        d = device.daemon
        started, mark, gave_up = self.now(), d.mark(), d.log().count(GAVE_UP)

        def done(outcome: str, reason: str = "", join_s: float | None = None) -> Conversation:
            device.room = None
            failures = [m for m in d.messages[mark:] if m.get("state") == "failed"]
            shown = tuple(str(m.get("reason")) for m in failures)
            if outcome != COMPLETED and shown:
                outcome, reason = FAILED, shown[0]
            failed_at = round(failures[0]["seen_monotonic"] - self._t0, 2) if failures else None
            return Conversation(device.name, round(started, 2), round(self.now(), 2), outcome, reason, join_s,
                                shown, failed_at, room)

        room = ""
        pressed = time.monotonic()
        if not self._ctl(d, "press"):
            return done(UNACCOUNTED, f"the press was refused: {self._why(d)}")
        player = play_into_mic(device.pulse_server, self.phrase)
        listening = self._until(d, "listening", mark, JOIN_TIMEOUT_S, gave_up)
        if listening is None:
            player.wait(timeout=30)
            self._ctl(d, "release")  # a button left down would make the next press no press at all
            self._end(d)
            return done(UNACCOUNTED, f"not listening {JOIN_TIMEOUT_S:.0f} s after the press ({self._why(d)})")
        join_s = round(d.messages[listening]["seen_monotonic"] - pressed, 3)
        room = device.room = self._room(d)
        player.wait(timeout=30)
        time.sleep(RELEASE_AFTER_S)
        released = d.mark()
        self._ctl(d, "release")
        speaking = self._until(d, "speaking", released, ANSWER_TIMEOUT_S, gave_up)
        answered = speaking is not None and self._until(d, "listening", speaking + 1, ANSWER_TIMEOUT_S,
                                                        gave_up) is not None
        room = self._room(d) or room  # a retry after the release answers in a new room
        heard_s = self._heard(room, HEARD_TIMEOUT_S if answered else 0.0)
        self._end(d)
        if answered and heard_s > 0:
            return done(COMPLETED, join_s=join_s)
        what = (f"no answer, though the agent heard {heard_s:.1f} s of the turn" if not answered
                else f"answered, but the agent's recording of {room} holds no speech")
        return done(UNACCOUNTED, f"{what} ({self._why(d)})", join_s)

    def _until(self, d: Daemon, state: str, after: int, timeout: float, gave_up: int) -> int | None:
        """The index in `d.messages` of the first `state` at or after `after`; None once the daemon gave up on a
        failure (its log says it will not retry), exited, or `timeout` passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and d.process.proc.poll() is None:
            messages = d.messages[after:]
            hit = next((i for i, m in enumerate(messages) if m.get("state") == state), None)
            if hit is not None:
                return after + hit
            if any(m.get("state") == "failed" for m in messages) and d.log().count(GAVE_UP) > gave_up:
                return None
            time.sleep(POLL_S)
        return None

    def _ctl(self, d: Daemon, command: str) -> bool:
        try:
            d.ctl(command)
        except (AssertionError, ClientError):  # refused or unanswered: part of the outcome, not the driver's crash
            return False
        return True

    def _end(self, d: Daemon) -> None:
        mark = d.mark()
        if self._ctl(d, "end"):
            self._until(d, "idle", mark, END_TIMEOUT_S, gave_up=1 << 30)

    def _room(self, d: Daemon) -> str:
        found = [line.split("room=", 1)[1].split()[0] for line in d.log().splitlines()
                 if "session connected room=" in line]
        return found[-1] if found else ""

    def _heard(self, room: str, timeout: float) -> float:
        """The most speech (s) one of the room's agents heard in a turn, once there is any or `timeout` passed."""
        deadline = time.monotonic() + timeout
        while True:
            voiced = max((float(e.get("voiced_s") or 0) for e in self.workers[0].room(room).events("stt_final")),
                         default=0.0)
            if voiced > 0 or time.monotonic() > deadline:
                return voiced
            time.sleep(POLL_S)

    def _why(self, d: Daemon) -> str:
        if d.process.proc.poll() is not None:
            return f"the daemon exited rc={d.process.proc.returncode}"
        return f"states since: {[m.get('state') for m in d.messages[-6:]]}"

    # -- faults ------------------------------------------------------------------------------------------------

    def _live_rooms(self) -> list[str]:
        return [d.room for d in self.devices if d.room]

    def _inflict(self, planned: Planned, progress: Callable[[str], None]) -> Fault:
        """Kill the node hosting the most conversations under way (or the worker running the most), mid-turn: it
        waits (up to 30 s) for a conversation to be under way."""
        deadline = time.monotonic() + 30
        while not self._live_rooms() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        rooms = self._live_rooms()
        if planned.kind == "node":
            hosts = [self.cluster.host_of(r, timeout=5).name for r in rooms]
            node = max(self.cluster.nodes, key=lambda n: hosts.count(n.name))
            node.kill()
            at = self.now()
            progress(f"fleet: {node.name} killed at {at:.0f} s (hosting {hosts.count(node.name)} conversations)")
            time.sleep(planned.down_s)
            node.start()
            for w in self.workers:
                w.ensure_registered()
            target = node.name
        else:
            ids = [self.cluster.worker_id_of(r, timeout=5) for r in rooms]
            worker = max(self.workers, key=lambda w: sum(i in w.ids() for i in ids))
            worker.kill()
            at = self.now()
            progress(f"fleet: worker{worker.tag} killed at {at:.0f} s (running {sum(i in worker.ids() for i in ids)} "
                     "conversations)")
            time.sleep(planned.down_s)
            worker.ensure_registered()
            target = f"worker{worker.tag}"
        restored = self.now()
        progress(f"fleet: {target} back at {restored:.0f} s")
        return Fault(planned.kind, target, at, restored)

    def crashed(self) -> list[str]:
        return [f"{d.name} rc={d.daemon.process.proc.returncode}" for d in self.devices
                if d.daemon.process.proc.poll() is not None]
