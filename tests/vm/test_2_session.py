"""One real session from the VM: speech played into the loopback card reaches the stub's agent through plain
ALSA (dsnoop, as the installer set it up) and the daemon under its unit; the agent's answer comes out of the
card's speaker side (dmix). After the session the daemon's planned restart (exit 75) is taken by systemd as a
success, and the journal holds none of the secrets it was given."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest

from tests.vm.appliance import UNIT, Appliance, from_guest_mono, to_guest
from tests.wire.signals import RATE, correlation, find_lag, read_wav

pytestmark = pytest.mark.vm

# The test's mouth and ear on the loopback card: what is played on device 1 is captured on device 0 (the
# daemon's mic) and what the daemon plays on device 0 is captured on device 1. Both sides of a loopback cable
# run with one format: the installer's dsnoop/dmix use 2 channels at 48 kHz, so the equipment does too.
HW = ["-D", "hw:Loopback,1,0", "-f", "S16_LE", "-r", str(RATE), "-c", "2", "-t", "raw", "-q"]
EAR_SECONDS = 240  # stopped when the session is over


@dataclass
class Session:
    source: np.ndarray
    reply: np.ndarray
    heard: np.ndarray
    ear: np.ndarray
    before: dict[str, str]
    after: dict[str, str]
    journal: str
    states: list[str]


@pytest.fixture(scope="module")
def session(appliance: Appliance, vm_speech: dict[str, np.ndarray]) -> Session:
    appliance.write_config(appliance.original_config.replace("restart_above_rss_mb: 300", "restart_above_rss_mb: 1"))
    appliance.reload()
    before = appliance.wait_active()
    to_guest(appliance, "/root/utterance.raw", vm_speech["utterance"])
    cursor = appliance.cursor()
    states = []
    try:
        appliance.ctl("start")
        states.append(appliance.wait_state("listening", timeout=120)["state"])
        # its own fds: a background child holding the agent's pipes would keep the command from returning
        appliance.sh(f"(arecord {' '.join(HW)} -d {EAR_SECONDS} /root/ear.raw </dev/null >/dev/null 2>&1 &); sleep 1")
        appliance.sh(f"aplay {' '.join(HW)} /root/utterance.raw", timeout=60)
        # the stub's agent answers once its VAD heard the turn end: 20 s after the speech in the emulated guest
        states.append(appliance.wait_state("speaking", timeout=150)["state"])
        states.append(appliance.wait_state("listening", "idle", timeout=90)["state"])
        if states[-1] == "listening":
            appliance.ctl("end")
        after = appliance.wait_active(other_than_pid=before["MainPID"])
        appliance.sh("pkill -INT -x arecord; while pgrep -x arecord >/dev/null; do sleep 1; done", timeout=60)
        appliance.stub.control.flush()
        heard = read_wav(appliance.stub.session_dir(1) / "heard.wav")
        appliance.sh("/opt/voice-device/venv/bin/python -c \"import numpy as n; "
                     "n.fromfile('/root/ear.raw', '<i2')[::2].tofile('/root/ear-left.raw')\"", timeout=120)
        ear = from_guest_mono(appliance, "/root/ear-left.raw")  # one channel of the two: half the transfer
    finally:
        appliance.write_config(appliance.original_config)
        appliance.wait_active()  # the planned restart may still be under way
        appliance.reload()
    return Session(source=vm_speech["utterance"], reply=vm_speech["reply"], heard=heard, ear=ear, before=before,
                   after=after, journal=appliance.journal(cursor), states=states)


def test_speech_played_into_the_card_reaches_the_agent(session: Session) -> None:
    source, heard = session.source, session.heard
    lag = find_lag(source, heard)
    start = max(0, lag)
    overlap = heard[start: start + len(source)]
    score = correlation(source[start - lag: start - lag + len(overlap)], overlap)
    print(f"\nagent heard the utterance at {lag / RATE * 1000:.0f} ms, correlation {score:.3f}")
    assert len(overlap) > 0.8 * len(source)
    assert score > 0.8


def test_the_agents_answer_comes_out_of_the_speaker(session: Session) -> None:
    reply, ear = session.reply, session.ear
    lag = find_lag(reply, ear)
    assert 0 <= lag < len(ear) - len(reply) // 2, lag
    played = ear[lag: lag + len(reply)]
    score = correlation(reply[: len(played)], played)
    print(f"\nspeaker played the reply, correlation {score:.3f}; states {session.states}")
    assert score > 0.8


def test_the_planned_restart_exit_75_restarts_without_counting_as_a_failure(session: Session) -> None:
    journal = session.journal
    assert "restarting to return memory" in journal
    assert re.search(r"voice-device.service: Main process exited, code=exited, status=75", journal), journal
    assert "Failed with result" not in journal and "failed" not in session.after["Result"]
    assert session.after["Result"] == "success"
    assert int(session.after["NRestarts"]) == int(session.before["NRestarts"]) + 1
    assert session.after["MainPID"] != session.before["MainPID"]


def test_the_journal_holds_no_secret(appliance: Appliance, session: Session) -> None:
    everything = appliance.machine.run(["journalctl", "-b", "-o", "export", "--no-pager"], timeout=120).check().stdout
    assert f"{UNIT}" in everything and "ready state=idle" in everything  # the daemon's own lines are there
    for name, value in appliance.secrets.items():
        assert value not in everything, f"{name} is in the journal"
    tokens = re.findall(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}", everything)
    assert tokens == [], "a participant token is in the journal"


def test_check_reads_the_installed_env_file_and_names_the_placeholders_without_it(appliance: Appliance) -> None:
    ok = appliance.machine.run(["voice-device", "check"], timeout=60)
    assert ok.rc == 0 and "config.yaml: valid" in ok.stderr, ok.stderr
    for value in appliance.secrets.values():
        assert value not in ok.stdout + ok.stderr
    bare = appliance.machine.run(["voice-device", "check", "--env", "/dev/null"], timeout=60)
    assert bare.rc == 2, bare.stderr
    line = next(i for i, text in enumerate(appliance.original_config.splitlines(), 1) if "endpoint: ${" in text)
    assert bare.stderr.splitlines()[0].startswith(f"voice-device: config.yaml:{line}: livekit.endpoint: still the "
                                                  "profile's placeholder"), bare.stderr
