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
from pathlib import Path

import numpy as np
import pytest

from tests.wire.daemon import Daemon, wait_for
from tests.wire.demo import has_sound_card
from tests.wire.harness import PYTHON, ROOT, LineProcess
from tests.wire.rig import play_into_mic
from tests.wire.signals import read_wav, speech, speech_tools_missing, write_wav

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


def test_headless_demo_hears_a_turn_answers_it_and_cleans_up_on_ctrl_c(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the demo's private network namespace needs root (it explains the fallback otherwise)")
    if has_sound_card() or not shutil.which("pulseaudio"):
        pytest.skip("this test covers the no-sound-card path: it needs pulseaudio and no card")
    if (why := speech_tools_missing()) is not None:
        pytest.skip(why)
    wav = write_wav(tmp_path / "hello.wav", speech("Hello demo, can you hear me? One two three."))
    record, audio_dir, runtime = tmp_path / "rec", tmp_path / "audio", tmp_path / "run"
    runtime.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PULSE_SERVER", "LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")}
    env.update(VOICE_DEVICE_AUDIO_DIR=str(audio_dir), XDG_RUNTIME_DIR=str(runtime), PYTHONUNBUFFERED="1")
    demo = LineProcess(["bash", str(ROOT / "scripts" / "demo"), "--headless", "--record", str(record),
                        "--agent-delay", "0.5", "--server", "stub"], tmp_path / "demo.log", env=env, new_session=True)
    try:
        demo.wait_line(lambda line: "ready (headless)" in line, timeout=120)  # setup.sh may install things
        pulse = next(_value(line, "PULSE_SERVER=") for line in demo.lines if "PULSE_SERVER=" in line)
        socket = next(_value(line, "control socket:") for line in demo.lines if "control socket:" in line)
        assert pulse == f"unix:{audio_dir}/native", "with no card and no PULSE_SERVER the demo starts its own rig"
        states = Daemon(process=demo, socket=Path(socket))
        states.follow()
        wait_for(lambda: states.messages, 5, "the daemon's status snapshot")

        player = play_into_mic(pulse, wav)
        _cli(socket, "press")
        states.wait_state("listening", timeout=20)
        assert player.wait(timeout=20) == 0
        mark = states.mark()
        _cli(socket, "release")
        states.wait_state("speaking", timeout=15, after=mark)
        states.wait_state("listening", timeout=20, after=states.mark())
        meta = wait_for(lambda: (p := record / "session-1" / "meta.json").exists() and json.loads(p.read_text()),
                        10, "the agent's recording")
        assert meta["preconnect_status"] == "used" and [c["method"] for c in meta["rpc_calls"]] == \
            ["start_turn", "end_turn"]
        assert (record / "session-1" / "heard.wav").stat().st_size > 48000 * 2  # more than a second heard
        demo.wait_line(lambda line: line.startswith("state: thinking"), timeout=5)  # the LED states are shown

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
    played = read_wav(record / "speaker.wav")
    loud = np.abs(played.astype(np.int32)) > 1000
    assert loud.sum() > 48000 // 2, "the agent's echo was played on the virtual speaker"
