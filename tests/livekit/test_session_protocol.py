"""livekit-agents' own session protocol (`lk.agent.session`) on the REAL stack: the daemon, livekit-server and the
livekit-agents worker of tests/livekit, whose AgentSession runs a session host in the room.

One push-to-talk turn, then a network cut that the SDK resumes. The device must take the agent's state, the
user's and the conversation from the session host (its log says so once, its status says `lk.agent.session`), show
the turns the agent recorded, ask the agent its state after the resume and get the answer, and never let the SDK
log "ignoring byte stream with topic 'lk.agent.session'" (one line per message before the device read them). The
fallback for an agent without a session host (attributes, `lk.transcription`) is the stub SFU's agent: tests/wire.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.livekit import network
from tests.livekit.conftest import launch_real_daemon, room_of
from tests.livekit.server import Server
from tests.livekit.worker_proc import RoomRecording, Worker
from tests.polling import wait_for
from tests.programs import need
from tests.wire.daemon import Daemon
from tests.wire.rig import play_into_mic
from tests.wire.signals import speech, write_wav

pytestmark = [pytest.mark.audio, pytest.mark.slow]

CUT_S = 3.0  # silent, then the device's old connections are reset: the SDK resumes (tests/livekit/network.py)
IDENTITY = "device-proto"


@dataclass
class Conversation:
    daemon: Daemon
    recording: RoomRecording
    states: list[str]  # the device's, over the turn
    after_resume: list[str]  # the device's, over the cut and the resume
    resume_log: str  # the daemon's log from the cut on

    def log(self) -> str:
        return self.daemon.process.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def conversation(server: Server, module_worker: Worker, audio_rig: Any, workdir: Path) -> Iterator[Conversation]:
    need("espeak-ng", "sox")
    wav = write_wav(workdir / "proto.wav", speech("What is the time in Lisbon right now?", seed=5))
    daemon = launch_real_daemon(server, workdir, audio_rig.pulse_server, agent_connect_timeout_s=20.0,
                                session={"idle_timeout_s": 600}, livekit={"identity": IDENTITY})
    try:
        player = play_into_mic(audio_rig.pulse_server, wav)
        daemon.ctl("press")
        daemon.wait_state("listening", timeout=40)
        assert player.wait(timeout=30) == 0
        time.sleep(0.3)
        mark = daemon.mark()
        daemon.ctl("release")
        daemon.wait_state("speaking", timeout=30, after=mark)
        daemon.wait_state("listening", timeout=30, after=daemon.mark())
        states = daemon.states()
        recording = module_worker.room(room_of(daemon))
        wait_for(lambda: [e for e in recording.events("conversation_item") if e["role"] == "assistant"], 15,
                 "the agent's reply in its conversation")

        mark, log_at = daemon.mark(), len(daemon.process.log_path.read_text(errors="replace"))
        network.cut(server.ns)
        try:
            time.sleep(CUT_S)
        finally:
            network.restore(server.ns, reset=True)
        try:
            daemon.wait_state("reconnecting", timeout=20, after=mark)
            daemon.wait_state("listening", timeout=60, after=mark)
        finally:
            network.clear(server.ns)
        wait_for(lambda: "get_session_state" in daemon.process.log_path.read_text(errors="replace")[log_at:], 15,
                 "the device to ask the agent its state after the resume")
        yield Conversation(daemon, recording, states, daemon.states()[mark:],
                           daemon.process.log_path.read_text(errors="replace")[log_at:])
    finally:
        daemon.process.stop()


def test_the_device_hears_the_real_agent_on_its_session_protocol(conversation: Conversation) -> None:
    log = conversation.log()
    spoke = re.findall(r"agent speaks lk\.agent\.session agent=(\S+):", log)
    joined = re.findall(r"agent joined identity=(\S+)", log)
    print(f"agent joined {joined}; heard on lk.agent.session {spoke}")
    assert spoke and spoke[0] == joined[0]
    assert conversation.daemon.snapshot()["session"]["agent_protocol"] == "lk.agent.session"


def test_the_device_states_follow_the_agents_session_events(conversation: Conversation) -> None:
    agent = conversation.recording.states()
    device = [s for s in conversation.states if s in ("initializing", "listening", "thinking", "speaking")]
    dedup = [s for i, s in enumerate(device) if i == 0 or device[i - 1] != s]
    print(f"agent states {agent}; device states {conversation.states}")
    assert agent[:4] == ["listening", "thinking", "speaking", "listening"]
    assert dedup[dedup.index("listening"):][:4] == ["listening", "thinking", "speaking", "listening"]


def test_the_turns_shown_are_the_agents_conversation_items(conversation: Conversation) -> None:
    """The user's turn (as the agent's STT took it) under the device's identity, the agent's under its own:
    exactly the items the agent's AgentSession added to its conversation."""
    items = [(e["role"], e["text"]) for e in conversation.recording.events("conversation_item")
             if e["role"] in ("user", "assistant") and e["text"]]
    agent = conversation.daemon.snapshot()["session"]["agent"]["identity"]
    shown = [(t["speaker"], t["text"]) for t in conversation.daemon.snapshot()["session"]["transcripts"]]
    print(f"the agent's conversation {items}; shown {shown}")
    speakers = {"user": IDENTITY, "assistant": agent}
    assert items and shown == [(speakers[role], text) for role, text in items]


def test_after_the_resume_the_device_asked_the_agent_its_state_and_got_the_answer(
        conversation: Conversation) -> None:
    asked = re.findall(r"get_session_state \S+ agent=\S+.*", conversation.resume_log)
    print(f"states over the cut {conversation.after_resume}; {asked}")
    assert "reconnecting" in conversation.after_resume and "failed" not in conversation.after_resume
    assert "mic republished" not in conversation.resume_log, "a full restart, not a resume"
    assert any(line.startswith("get_session_state answered") for line in asked), asked


def test_the_sdk_never_logs_a_session_message_it_had_no_reader_for(conversation: Conversation) -> None:
    log = conversation.log()
    ignored = [line for line in log.splitlines() if "ignoring byte stream" in line or "ignoring text stream" in line]
    print(f"{len(log.splitlines())} log lines; streams the SDK ignored: {ignored}")
    assert "agent speaks lk.agent.session" in log, "no session message came: this proves nothing"
    assert not [line for line in ignored if "lk.agent.session" in line]
    assert not ignored
