"""The companion's pieces as the device's test suite reaches them: its contract module loaded from its file (plain
Python: no livekit-agents needed), and the interpreter that has livekit-agents and the companion installed."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "agent" / "voice_device_agent" / "contract.py"
AGENT_VENV = Path(os.environ.get("VOICE_DEVICE_AGENT_VENV", ROOT / ".venv-agent"))
AGENT_PYTHON = AGENT_VENV / "bin" / "python"


def contract() -> ModuleType:
    name = "_companion_contract"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, CONTRACT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]
