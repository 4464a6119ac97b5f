"""The offline plugins, as an agent imports them (agent/examples/basic_agent.py): a recording STT (here keeping
nothing), a scripted LLM that calls the device's tools when asked, an espeak-ng TTS. Not speech recognition: the
STT describes how much speech it was given, the LLM repeats it."""

from tests.livekit.agent.llm import ScriptedLLM
from tests.livekit.agent.stt import RecordingSTT
from tests.livekit.agent.tts import EspeakTTS

__all__ = ["EspeakTTS", "RecordingSTT", "ScriptedLLM"]
