"""`python -m tests.livekit.run_example` (on .venv-agent, with agent/examples on PYTHONPATH):
agent/examples/basic_agent.py run as a user runs it (`dev --no-reload`), with one change for a shared test machine:
the worker reports no load. The server dispatches only to a worker whose load is below 1, and the default load is
this machine's CPU use, which other suites often push above that on 2 cores (the test agent does the same:
tests/livekit/agent/__main__.py). Imported by its module name, so that the job processes find its entrypoint."""

from __future__ import annotations

import sys

from livekit.agents import cli

if __name__ == "__main__":
    import basic_agent  # agent/examples, on PYTHONPATH

    basic_agent.server.load_fnc = lambda: 0.0
    sys.argv = [basic_agent.__file__, "dev", "--no-reload"]
    cli.run_app(basic_agent.server)
