"""`scripts/demo --headless` as a newcomer on a machine without a sound card would run it, driven through the
control socket with the documented CLI, then stopped as Ctrl-C stops it (SIGINT to its process group).

It must start its own virtual audio rig (no PULSE_SERVER, no card), a namespace and the stub, show the states,
hand the speech to the agent (its recording appears), play the echo on the speaker, and leave nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.programs import need
from tests.wire.daemon import Daemon, wait_for
from tests.wire.demo import has_sound_card
from tests.wire.harness import PYTHON, ROOT, LineProcess
from tests.wire.rig import play_into_mic
from tests.wire.signals import read_wav, speech, write_wav

pytestmark = [pytest.mark.wire, pytest.mark.audio, pytest.mark.slow]


def _value(line: str, label: str) -> str:
    return line.split(label, 1)[1].strip().split()[0]


def _remove_leftovers(pid: int, env: dict[str, str]) -> None:
    """What a demo killed with SIGKILL leaves: its namespace (and the processes in it) and its audio rig."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    for name in (line.split()[0] for line in out.splitlines() if line.startswith(f"vddemo-{pid}-")):
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10).stdout
        for p in pids.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(p), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    subprocess.run(["bash", str(ROOT / "scripts" / "virtual-audio.sh"), "stop"], env=env, capture_output=True,
                   timeout=30)


def _cli(socket: str, *args: str) -> None:
    result = subprocess.run([PYTHON, "-m", "device", "ctl", *args, "--socket", socket], cwd=ROOT,
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr


@dataclass
class RunningDemo:
    demo: LineProcess
    states: Daemon
    pulse: str
    socket: str
    record: Path


@contextlib.contextmanager
def headless_demo(tmp_path: Path, *args: str, server: str = "stub") -> Iterator[RunningDemo]:
    """`scripts/demo --headless --record DIR --agent-delay 0.5 --server SERVER ARGS` as a newcomer with no sound
    card runs it; on leaving, Ctrl-C (SIGINT to its process group) and the proof that it left nothing behind."""
    if os.geteuid() != 0:
        pytest.skip("the demo's private network namespace needs root (it explains the fallback otherwise)")
    if has_sound_card() or not shutil.which("pulseaudio"):
        pytest.skip("this test covers the no-sound-card path: it needs pulseaudio and no card")
    need("espeak-ng", "sox")
    record, audio_dir, runtime = tmp_path / "rec", tmp_path / "audio", tmp_path / "run"
    runtime.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PULSE_SERVER", "LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")}
    env.update(VOICE_DEVICE_AUDIO_DIR=str(audio_dir), XDG_RUNTIME_DIR=str(runtime), PYTHONUNBUFFERED="1")
    demo = LineProcess(["bash", str(ROOT / "scripts" / "demo"), "--headless", "--record", str(record),
                        "--agent-delay", "0.5", "--server", server, *args], tmp_path / "demo.log", env=env,
                       new_session=True)
    try:
        demo.wait_line(lambda line: "ready (headless)" in line, timeout=120)  # setup.sh may install things
        pulse = next(_value(line, "PULSE_SERVER=") for line in demo.lines if "PULSE_SERVER=" in line)
        socket = next(_value(line, "control socket:") for line in demo.lines if "control socket:" in line)
        assert pulse == f"unix:{audio_dir}/native", "with no card and no PULSE_SERVER the demo starts its own rig"
        states = Daemon(process=demo, socket=Path(socket))
        states.follow()
        wait_for(lambda: states.messages, 5, "the daemon's status snapshot")
        yield RunningDemo(demo, states, pulse, socket, record)
        os.killpg(demo.proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        assert demo.wait(timeout=40) == 0, demo.log_tail()
    finally:
        if demo.proc.poll() is None:  # a failure above: let the demo clean up, or do it for it
            os.killpg(demo.proc.pid, signal.SIGINT)
            try:
                demo.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(demo.proc.pid, signal.SIGKILL)
                demo.proc.wait(timeout=10)
                _remove_leftovers(demo.proc.pid, env)
        demo.stop()
    assert "demo: stopped" in demo.lines[-3:] or demo.wait_line(lambda line: line == "demo: stopped", 1)
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    assert f"vddemo-{demo.proc.pid}-" not in namespaces, "the demo's namespace is deleted"
    status = subprocess.run(["bash", str(ROOT / "scripts" / "virtual-audio.sh"), "status"], env=env,
                            capture_output=True, text=True, timeout=10)
    assert status.returncode == 3, "the rig the demo started is stopped"
    assert not Path(socket).exists(), "the daemon removed its control socket"


def _recording(record: Path) -> dict[str, Any]:
    meta: dict[str, Any] = wait_for(
        lambda: (p := record / "session-1" / "meta.json").exists() and json.loads(p.read_text()), 10,
        "the agent's recording")
    return meta


def test_headless_demo_hears_a_turn_answers_it_and_cleans_up_on_ctrl_c(tmp_path: Path) -> None:
    with headless_demo(tmp_path) as run:
        wav = write_wav(tmp_path / "hello.wav", speech("Hello demo, can you hear me? One two three."))
        player = play_into_mic(run.pulse, wav)
        _cli(run.socket, "press")
        run.states.wait_state("listening", timeout=20)
        assert player.wait(timeout=20) == 0
        mark = run.states.mark()
        _cli(run.socket, "release")
        run.states.wait_state("speaking", timeout=15, after=mark)
        run.states.wait_state("listening", timeout=20, after=run.states.mark())
        meta = _recording(run.record)
        assert meta["preconnect_status"] == "used" and [c["method"] for c in meta["rpc_calls"]] == \
            ["start_turn", "end_turn"]
        assert (run.record / "session-1" / "heard.wav").stat().st_size > 48000 * 2  # more than a second heard
        run.demo.wait_line(lambda line: line.startswith("state: thinking"), timeout=5)  # the LED states are shown
    played = read_wav(run.record / "speaker.wav")
    loud = np.abs(played.astype(np.int32)) > 1000
    assert loud.sum() > 48000 // 2, "the agent's echo was played on the virtual speaker"


def test_the_wake_word_demo_needs_no_button_and_says_how_to_speak_to_it(tmp_path: Path) -> None:
    with headless_demo(tmp_path, "--wake-word", "okay_nabu") as run:
        hint = next(line for line in run.demo.lines if "espeak-ng" in line)
        assert "okay nabu" in hint and "paplay -d spk" in hint, "the banner says how to say the wake word"
        assert any("no button needed" in line for line in run.demo.lines)
        wait_for(lambda: run.states.snapshot()["wake"]["listening"], 10, "the wake-word listener")
        time.sleep(1.0)
        wav = write_wav(tmp_path / "ask.wav", speech("okay nabu, can you hear me, one two three", voice="en-us"))
        play_into_mic(run.pulse, wav).wait(timeout=20)
        run.states.wait_state("listening", timeout=20)
        run.states.wait_state("speaking", timeout=20)  # its own turn detection: nothing was pressed or released
        meta = _recording(run.record)
        assert meta["preconnect_status"] == "used" and meta["rpc_calls"] == []
        assert run.states.snapshot()["metrics"]["conversations_wake_word"] == 1


@pytest.mark.livekit_server
def test_the_wake_word_demo_on_the_real_stack_gets_an_answer_from_the_agents_own_turn_detection(
        tmp_path: Path) -> None:
    """`--server real --wake-word`: the real test agent runs with its own voice detection, not push-to-talk (whose
    input stays off until a start_turn that a wake-word conversation never calls: it would never answer)."""
    from tests.livekit.conftest import require
    from tests.livekit.demo_stack import RealStack

    require(RealStack.unavailable())
    with headless_demo(tmp_path, "--wake-word", "okay_nabu", server="real") as run:
        assert any(line.startswith("demo: server:") and "livekit-server" in line for line in run.demo.lines)
        wait_for(lambda: run.states.snapshot()["wake"]["listening"], 10, "the wake-word listener")
        time.sleep(1.0)
        wav = write_wav(tmp_path / "ask.wav", speech("okay nabu, can you hear me, one two three", voice="en-us"))
        play_into_mic(run.pulse, wav).wait(timeout=20)
        run.states.wait_state("listening", timeout=30)
        run.states.wait_state("speaking", timeout=30)  # the agent's VAD ended the turn and its TTS answered
        assert run.states.snapshot()["metrics"]["conversations_wake_word"] == 1
