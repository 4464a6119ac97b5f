"""A reload (SIGHUP) refuses a config that still uses a profile's placeholders as `run` does at start-up: the
running configuration is kept, and the reason shows where a broken config's would."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from device.config import Config, load_config
from device.daemon.app import App

ROOT = Path(__file__).resolve().parents[2]


def test_a_reload_onto_the_profiles_placeholders_keeps_the_running_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "VOICE_DEVICE_TOKEN_ENDPOINT", "VOICE_DEVICE_CREDENTIAL"):
        monkeypatch.delenv(name, raising=False)
    running = Config()
    app = App(running, str(ROOT / "config" / "kiosk.yaml"))
    assert load_config(app.config_path).livekit.endpoint.startswith("https://tokens.example.invalid/")
    brought_up: list[Config] = []

    async def bring_up(config: Config) -> None:  # not the hardware: only whether the new config would be used
        brought_up.append(config)

    monkeypatch.setattr(app, "_bring_up", bring_up)
    asyncio.run(app.reload())
    assert brought_up == [] and app.config is running and app.reloads == 0
    line = next(i for i, text in enumerate(Path(app.config_path).read_text().splitlines(), 1) if "endpoint:" in text)
    assert app.device_status().reload_error == (
        f"reload failed, old configuration kept: kiosk.yaml:{line}: livekit.endpoint: still the profile's placeholder "
        "(https://tokens.example.invalid/voice-device): set VOICE_DEVICE_TOKEN_ENDPOINT in /etc/voice-device/env "
        "(or replace the value here)")
