"""The ready HAT files (config/hats/): each, used as its header says on each profile, is a valid config with the
pins the README's table promises."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from device.config import load_config_text

ROOT = Path(__file__).resolve().parent.parent
HATS = sorted((ROOT / "config" / "hats").glob("*.yaml"))
PROFILES = ["kiosk", "smart-speaker", "appliance"]
ENV = {"VOICE_DEVICE_TOKEN_ENDPOINT": "https://tokens.acme-voice.io/d", "VOICE_DEVICE_CREDENTIAL": "k"}


def on_profile(hat: Path, profile: str) -> str:
    """`controls:` replaced by the HAT's, its `audio:` keys set in the profile's (the header's instructions)."""
    config = yaml.safe_load((ROOT / "config" / f"{profile}.yaml").read_text())
    fragment = yaml.safe_load(hat.read_text())
    assert set(fragment) == {"audio", "controls"}, hat.name
    config["audio"] = {**config.get("audio", {}), **fragment["audio"]}
    config["controls"] = fragment["controls"]
    return yaml.safe_dump(config)


def test_there_are_hat_files_and_each_says_how_to_use_it() -> None:
    assert {h.stem for h in HATS} >= {"respeaker-2mic", "respeaker-4mic", "aiy-voice-hat", "usb-speakerphone"}
    for hat in HATS:
        assert "Use: replace your profile's `controls:`" in hat.read_text(), hat.name


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("hat", HATS, ids=[h.stem for h in HATS])
def test_each_hat_on_each_profile_is_a_valid_config(hat: Path, profile: str) -> None:
    config = load_config_text(on_profile(hat, profile), name=hat.name, env=ENV)
    own = load_config_text((ROOT / "config" / f"{profile}.yaml").read_text(), env=ENV)
    assert config.session == own.session and config.wake_word == own.wake_word  # the HAT changes no behaviour


def test_the_hats_pins_are_the_documented_ones() -> None:
    def load(name: str):
        return load_config_text(on_profile(ROOT / "config" / "hats" / f"{name}.yaml", "kiosk"), env=ENV)

    two = load("respeaker-2mic")
    assert (two.controls.button.pin, two.controls.leds.kind, two.controls.leds.count) == (17, "apa102", 3)
    four = load("respeaker-4mic")
    assert (four.controls.leds.power_pin, four.controls.leds.count, four.audio.input_channels) == (5, 12, 4)
    aiy = load("aiy-voice-hat")
    assert (aiy.controls.button.pin, aiy.controls.leds.pins) == (23, (25,))
    readme = (ROOT / "README.md").read_text()
    for hat in HATS:
        assert f"config/hats/{hat.name}" in readme, f"{hat.name} is not in the README's table"
