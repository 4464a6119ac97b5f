"""The test agent's job: a real AgentSession (its own room_io: pre-connect audio, `lk.agent.state`,
`lk.transcription`, `lk.chat`) with the local plugins, and push-to-talk RPCs the way LiveKit's push-to-talk
example registers them (`turn_detection="manual"`, input off until `start_turn`).

Everything the tests judge is written by the Recorder: agent states, RPC calls, what the pre-connect handler
pushed (from the session's own log record), each STT stream's frames, the LLM's replies, chat received.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession, JobContext, room_io
from livekit.plugins import silero

from tests.livekit.agent.llm import ScriptedLLM
from tests.livekit.agent.record import Recorder
from tests.livekit.agent.stt import RecordingSTT
from tests.livekit.agent.tts import EspeakTTS

INPUT_RATE = 48000  # the device captures at 48 kHz: no resampler between its buffer and what the STT records


@dataclass(frozen=True)
class Settings:
    record: Path
    push_to_talk: bool
    start_turn_delay_s: float = 0.0  # start_turn waits this long before enabling the input (a slow agent)


class PreConnectReport(logging.Handler):
    """Catches the session's own "pre-connect audio buffer pushed" record (room_io/_input.py) and its
    "timeout"/"too old"/"no trackId" warnings, so the tests see what the real handler did with the buffer."""

    WATCHED = ("pre-connect audio", "timeout waiting for pre-connect audio buffer")

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(level=logging.DEBUG)
        self.recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith(self.WATCHED):
            return
        extra = {k: getattr(record, k) for k in ("duration", "track_id", "participant", "delta_time")
                 if hasattr(record, k)}
        self.recorder.event("preconnect", message=message, **extra)


def settings_from_env() -> Settings:
    return Settings(record=Path(os.environ["VD_AGENT_RECORD"]), push_to_talk=os.environ.get("VD_AGENT_PTT") == "1",
                    start_turn_delay_s=float(os.environ.get("VD_AGENT_START_TURN_DELAY", "0")))


async def entrypoint(ctx: JobContext) -> None:
    settings = settings_from_env()
    recorder = Recorder(settings.record / ctx.job.room.name)
    recorder.event("job", room=ctx.job.room.name, job_id=ctx.job.id, agent_name=ctx.job.agent_name,
                   push_to_talk=settings.push_to_talk)
    agents_log = logging.getLogger("livekit.agents")
    report = PreConnectReport(recorder)
    agents_log.addHandler(report)
    agents_log.setLevel(logging.DEBUG)
    ctx.add_shutdown_callback(lambda: _shutdown(recorder, agents_log, report))

    session: AgentSession[Any] = AgentSession(
        stt=RecordingSTT(recorder), llm=ScriptedLLM(recorder), tts=EspeakTTS(), vad=ctx.proc.userdata["vad"],
        turn_detection="manual" if settings.push_to_talk else "vad")
    _record_session(session, recorder)
    options = room_io.RoomOptions(
        # AGC off: what the STT records is compared with the reference signal sample by sample
        audio_input=room_io.AudioInputOptions(sample_rate=INPUT_RATE, auto_gain_control=False))
    await session.start(agent=Agent(instructions="Answer what the user said."), room=ctx.room, room_options=options)
    recorder.event("session_started", identity=ctx.room.local_participant.identity)
    if settings.push_to_talk:
        session.input.set_audio_enabled(False)
        _register_turns(ctx.room.local_participant, session, recorder, settings.start_turn_delay_s)


async def _shutdown(recorder: Recorder, agents_log: logging.Logger, report: logging.Handler) -> None:
    recorder.event("shutdown")
    agents_log.removeHandler(report)
    recorder.close()


def _record_session(session: AgentSession[Any], recorder: Recorder) -> None:
    session.on("agent_state_changed", lambda ev: recorder.event("agent_state", old=ev.old_state, new=ev.new_state))
    session.on("user_input_transcribed",
               lambda ev: recorder.event("user_transcript", text=ev.transcript, final=ev.is_final))
    session.on("conversation_item_added",
               lambda ev: recorder.event("conversation_item", role=getattr(ev.item, "role", ""),
                                         text=getattr(ev.item, "text_content", "")))
    session.on("close", lambda ev: recorder.event("session_closed", reason=str(ev.reason)))


def _register_turns(lp: rtc.LocalParticipant, session: AgentSession[Any], recorder: Recorder,
                    start_turn_delay_s: float) -> None:
    async def start_turn(data: rtc.RpcInvocationData) -> str:
        recorder.event("rpc", method="start_turn", caller=data.caller_identity)
        if start_turn_delay_s > 0:
            await asyncio.sleep(start_turn_delay_s)
        session.interrupt()
        session.clear_user_turn()
        session.room_io.set_participant(data.caller_identity)
        session.input.set_audio_enabled(True)
        recorder.event("input_enabled", caller=data.caller_identity)
        return "ok"

    async def end_turn(data: rtc.RpcInvocationData) -> str:
        recorder.event("rpc", method="end_turn", caller=data.caller_identity)
        session.input.set_audio_enabled(False)
        session.commit_user_turn(transcript_timeout=10.0)
        return "ok"

    async def cancel_turn(data: rtc.RpcInvocationData) -> str:
        recorder.event("rpc", method="cancel_turn", caller=data.caller_identity)
        session.input.set_audio_enabled(False)
        session.clear_user_turn()
        return "ok"

    lp.register_rpc_method("start_turn", start_turn)
    lp.register_rpc_method("end_turn", end_turn)
    lp.register_rpc_method("cancel_turn", cancel_turn)


def prewarm(proc: Any) -> None:
    proc.userdata["vad"] = silero.VAD.load()  # the model ships in the livekit-plugins-silero wheel
