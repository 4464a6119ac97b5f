"""Tests against the REAL stack: `livekit-server` (built from its pinned tag by scripts/livekit-server.sh) and a
real `livekit-agents` worker (tests/livekit/agent, run from .venv-agent), both in the test's network namespace."""
