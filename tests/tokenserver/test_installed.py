"""scripts/setup.sh installs the token endpoint into the test venv as the `voice-device-tokens` command (the cluster
suite runs it by that name). Outside CI a venv set up before tokenserver/ existed may lack it: skipped there, a
failure under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tokenserver.harness import program_env


def test_setup_puts_the_command_beside_the_interpreter() -> None:
    command = Path(sys.executable).parent / "voice-device-tokens"
    if not command.exists():
        reason = f"{command} is not installed: run `bash scripts/setup.sh` (it runs `pip install -e tokenserver`)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    r = subprocess.run([str(command), "--version"], capture_output=True, text=True, timeout=60, env=program_env())
    assert r.returncode == 0 and r.stdout.startswith("voice-device-tokens "), r.stderr
