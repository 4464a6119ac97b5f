"""The test agent's job: a real AgentSession (its own room_io: pre-connect audio, `lk.agent.state`,
`lk.transcription`, `lk.chat`) with the local plugins, paired with the device by the companion
(`voice_device_agent`, agent/): it reads the device's mode, and for a push-to-talk device takes manual turns
through `start_turn` / `end_turn` / `cancel_turn` with its input off until `start_turn`; the LLM is offered the
device's tools (the scripted LLM calls them when the user's words ask).

Everything the tests judge is written by the Recorder: the device the companion saw, agent states, RPC calls, what
the pre-connect handler pushed (from the session's own log record), each STT stream's frames, the LLM's replies
and tool calls, chat received. With `--export DIR` (the demo's `--record DIR`) each job's recording is also
written as `DIR/session-N/` (heard.wav, preconnect.raw, meta.json) when the job ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livekit.agents import Agent, AgentSession, JobContext, room_io
from livekit.plugins import silero
from voice_device_agent import DeviceLink

from tests.livekit.agent.export import export_session
from tests.livekit.agent.llm import ScriptedLLM
from tests.livekit.agent.record import Recorder
from tests.livekit.agent.stt import RecordingSTT
from tests.livekit.agent.tts import EspeakTTS

INPUT_RATE = 48000  # the device captures at 48 kHz: no resampler between its buffer and what the STT records
INSTRUCTIONS = "Answer what the user said."


@dataclass(frozen=True)
class Settings:
    record: Path
    start_turn_delay_s: float = 0.0  # start_turn waits this long before enabling the input (a slow agent)
    export: Path | None = None


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


class RecordedLink(DeviceLink):
    """The companion's link, with each turn RPC recorded and `start_turn` answering late if asked to."""

    recorder: Recorder
    start_turn_delay_s = 0.0

    async def start_turn(self, caller: str) -> None:
        self.recorder.event("rpc", method="start_turn", caller=caller)
        if self.start_turn_delay_s > 0:
            await asyncio.sleep(self.start_turn_delay_s)
        await super().start_turn(caller)
        self.recorder.event("input_enabled", caller=caller)

    async def end_turn(self) -> None:
        self.recorder.event("rpc", method="end_turn", caller=self.device.identity)
        await super().end_turn()

    async def cancel_turn(self) -> None:
        self.recorder.event("rpc", method="cancel_turn", caller=self.device.identity)
        await super().cancel_turn()


def settings_from_env() -> Settings:
    export = os.environ.get("VD_AGENT_EXPORT")
    return Settings(record=Path(os.environ["VD_AGENT_RECORD"]),
                    start_turn_delay_s=float(os.environ.get("VD_AGENT_START_TURN_DELAY", "0")),
                    export=Path(export) if export else None)


async def entrypoint(ctx: JobContext) -> None:
    settings = settings_from_env()
    recorder = Recorder(settings.record / ctx.job.room.name)
    recorder.event("job", room=ctx.job.room.name, job_id=ctx.job.id, agent_name=ctx.job.agent_name)
    agents_log = logging.getLogger("livekit.agents")
    report = PreConnectReport(recorder)
    agents_log.addHandler(report)
    agents_log.setLevel(logging.DEBUG)
    ctx.add_shutdown_callback(lambda: _shutdown(recorder, agents_log, report, settings.export))

    # turn_detection="vad": the companion makes it manual for a push-to-talk device
    session: AgentSession[Any] = AgentSession(stt=RecordingSTT(recorder), llm=ScriptedLLM(recorder), tts=EspeakTTS(),
                                              vad=ctx.proc.userdata["vad"], turn_detection="vad")
    _record_session(session, recorder)
    await ctx.connect()
    # this job's link class: jobs run side by side in threads of one worker
    job_link = type("JobLink", (RecordedLink,), {"recorder": recorder,
                                                 "start_turn_delay_s": settings.start_turn_delay_s})
    device = await job_link.attach(session, ctx.room)
    recorder.event("device", identity=device.device.identity, mode=device.device.mode, protocol=device.device.protocol,
                   version=device.device.version, manual_turns=device.manual_turns)
    options = room_io.RoomOptions(
        # AGC off: what the STT records is compared with the reference signal sample by sample
        audio_input=room_io.AudioInputOptions(sample_rate=INPUT_RATE, auto_gain_control=False))
    await session.start(agent=Agent(instructions=INSTRUCTIONS, tools=device.tools()), room=ctx.room,
                        room_options=options)
    recorder.event("session_started", identity=ctx.room.local_participant.identity)


async def _shutdown(recorder: Recorder, agents_log: logging.Logger, report: logging.Handler,
                    export: Path | None) -> None:
    recorder.event("shutdown")
    agents_log.removeHandler(report)
    recorder.close()
    if export is not None and recorder.folder is not None:
        export_session(recorder.folder, export)


def _record_session(session: AgentSession[Any], recorder: Recorder) -> None:
    session.on("agent_state_changed", lambda ev: recorder.event("agent_state", old=ev.old_state, new=ev.new_state))
    session.on("user_state_changed", lambda ev: recorder.event("user_state", old=ev.old_state, new=ev.new_state))
    session.on("user_input_transcribed",
               lambda ev: recorder.event("user_transcript", text=ev.transcript, final=ev.is_final))
    session.on("conversation_item_added",
               lambda ev: recorder.event("conversation_item", role=getattr(ev.item, "role", ""),
                                         text=getattr(ev.item, "text_content", "")))
    session.on("function_tools_executed",
               lambda ev: recorder.event("tools_executed", calls=[c.name for c in ev.function_calls],
                                         outputs=[o.output if o else None for o in ev.function_call_outputs]))
    session.on("close", lambda ev: recorder.event("session_closed", reason=str(ev.reason)))


def prewarm(proc: Any) -> None:
    proc.userdata["vad"] = silero.VAD.load()  # the model ships in the livekit-plugins-silero wheel
