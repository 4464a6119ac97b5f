"""A real `livekit-agents` worker for the tests, with local plugins: a recording STT, a scripted LLM, an espeak-ng
TTS and silero VAD. It runs in its own virtualenv (.venv-agent: livekit-agents 1.8.9 pins livekit 1.1.21, the
daemon pins 1.2.1), so nothing here may import the daemon's code or the test suite's helpers."""
