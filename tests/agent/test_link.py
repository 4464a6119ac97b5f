"""The companion's DeviceLink on the interpreter that has livekit-agents (.venv-agent): tests/agent/link_checks.py
runs every check once in one process (importing livekit-agents takes seconds) and each becomes a test here."""

from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.agent.companion import AGENT_PYTHON, AGENT_VENV, ROOT

CHECKS_FILE = Path(__file__).with_name("link_checks.py")
CHECKS = [node.name for node in ast.parse(CHECKS_FILE.read_text()).body
          if isinstance(node, ast.AsyncFunctionDef) and node.name.startswith("check_")]


@pytest.fixture(scope="module")
def results() -> dict[str, str]:
    if not AGENT_PYTHON.exists():
        why = f"the agent's virtualenv {AGENT_VENV} is missing: scripts/setup.sh creates it"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {why}", pytrace=False)
        pytest.skip(why)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    out = subprocess.run([str(AGENT_PYTHON), "-m", "tests.agent.link_checks"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    found: dict[str, str] = json.loads(out.stdout.splitlines()[-1])
    return found


@pytest.mark.parametrize("check", CHECKS)
def test_the_device_link(results: dict[str, str], check: str) -> None:
    assert check in results, f"{check} did not run"
    assert results[check] == "ok", results[check]
