"""A LiveKit agent for voice-device: copy this file.

    pip install ./agent                 # from a voice-device checkout; brings livekit-agents
    export LIVEKIT_URL=… LIVEKIT_API_KEY=… LIVEKIT_API_SECRET=…
    python basic_agent.py dev           # the device's config names it: livekit.agent_name: demo-agent

It pairs each session with the device (voice_device_agent.attach: push-to-talk turns when the device is
push-to-talk, a wake-word conversation ended the way the device expects) and lets the LLM set the volume, end
the conversation and read the device's status. As written it runs on this repository's offline test plugins
(run it from the repository's root with PYTHONPATH=.); for LiveKit Cloud with real speech services change only
the two plugin lines, e.g.:

    from livekit.plugins import cartesia, deepgram, openai
    STT, LLM, TTS = deepgram.STT(), openai.LLM(model="gpt-4.1-mini"), cartesia.TTS()
"""

from __future__ import annotations

import os

import voice_device_agent
from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli
from livekit.plugins import silero

from tests.livekit.agent.plugins import EspeakTTS, RecordingSTT, ScriptedLLM  # the plugins (1/2)

STT, LLM, TTS = RecordingSTT(), ScriptedLLM(), EspeakTTS()  # the plugins (2/2)

AGENT_NAME = os.environ.get("VOICE_DEVICE_AGENT", "demo-agent")
INSTRUCTIONS = ("You are the voice of a small speaker. Answer in one or two short sentences. "
                "When the user says goodbye, end the conversation.")

server = AgentServer()


@server.rtc_session(agent_name=AGENT_NAME)
async def entrypoint(ctx: JobContext) -> None:
    session: AgentSession[None] = AgentSession(stt=STT, llm=LLM, tts=TTS, vad=silero.VAD.load(), turn_detection="vad")
    await ctx.connect()
    device = await voice_device_agent.attach(session, ctx.room)
    await session.start(agent=Agent(instructions=INSTRUCTIONS, tools=device.tools()), room=ctx.room)


if __name__ == "__main__":
    cli.run_app(server)
