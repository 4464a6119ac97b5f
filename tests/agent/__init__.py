"""The companion for livekit-agents (agent/voice_device_agent) tested on its own: its contract on this venv, its
link on .venv-agent (livekit-agents), against fake rooms and sessions."""
