"""The configuration loader: profiles load, every bad input is one line naming file, line and key."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from device.config import ConfigError, load_config, load_config_text
from device.config.display import secret_values, to_dict
from device.config.reference import reference_text

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ["kiosk", "smart-speaker", "appliance", "demo"]
LOCAL = "livekit:\n  token_source: local\n  url: ws://127.0.0.1:7880\n  api_key: k\n  api_secret: s3cr3t-value\n"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads(profile: str) -> None:
    config = load_config(ROOT / "config" / f"{profile}.yaml", env={})
    assert config.source.endswith(f"{profile}.yaml")


def test_profiles_select_their_modes() -> None:
    modes = {p: load_config(ROOT / "config" / f"{p}.yaml", env={}).session.mode for p in PROFILES}
    assert modes == {"kiosk": "push_to_talk", "smart-speaker": "wake_word", "appliance": "toggle",
                     "demo": "push_to_talk"}
    speaker = load_config(ROOT / "config" / "smart-speaker.yaml", env={})
    assert speaker.wake_word.models == ("okay_nabu",) and speaker.session.profile.wake_word
    assert speaker.controls.button is not None and speaker.controls.button.double_press_s > 0  # double press: mute


def _error(text: str, name: str = "kiosk.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, name)
    return info.value


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        (LOCAL + "audio:\n  sample_rate: 44\n", 7, "audio.sample_rate", "expected one of 16000, 24000, 48000, got 44"),
        (LOCAL + "audoi:\n  volume: 1\n", 6, "audoi", "did you mean 'audio'"),
        (LOCAL + "session:\n  backof: {}\n", 7, "session.backof", "did you mean 'backoff'"),
        (LOCAL + "audio:\n  volume: loud\n", 7, "audio.volume", "expected a number"),
        (LOCAL + "audio:\n  volume: 1.5\n", 7, "audio.volume", "at most 1.0"),
        (LOCAL + "audio:\n  preroll_ms: -1\n", 7, "audio.preroll_ms", "at least 0"),
        (LOCAL + "audio:\n  echo_cancellation: maybe\n", 7, "audio.echo_cancellation", "true or false"),
        (LOCAL + "session:\n  mode: kiosk\n", 7, "session.mode", "expected one of push_to_talk"),
        ("livekit:\n  token_source: local\n  url: 'wss//nohost'\n  api_key: k\n  api_secret: s\n", 3,
         "livekit.url", "malformed URL"),
        ("livekit:\n  endpoint: http://tokens.example.com/t\n", 2, "livekit.endpoint", "use https://"),
        ("livekit:\n  endpoint: 'https://exa mple.com:port/'\n", 2, "livekit.endpoint", "malformed URL"),
        ("livekit:\n  token_source: sandbox\n", 2, "livekit.sandbox_id", "required when"),
        (LOCAL + "controls:\n  leds:\n    kind: rgbled\n    pins: [5]\n", 9, "controls.leds.pins", "needs 3 pin"),
        (LOCAL + "controls:\n  button: {pin: 5}\n  leds: {kind: led, pins: [5]}\n", 7, "controls.button.pin",
         "already used"),
        (LOCAL + "controls:\n  gestures:\n    presss: end_session\n", 8, "controls.gestures.presss", "did you mean"),
        (LOCAL + "audio:\n  sample_rate: 16000\n  sample_rate: 24000\n", 8, "audio.sample_rate", "duplicate"),
        (LOCAL + "audio: [1, 2]\n", 6, "audio", "expected a mapping"),
        (LOCAL + "  room: ${NOPE}\n", 6, "livekit.room", "NOPE is not set"),
        (LOCAL + "wake_word:\n  models: [okay_nabu, hey_siri]\n", 7, "wake_word.models[1]",
         "no built-in wake word 'hey_siri'; the built-in ones are okay_nabu, hey_jarvis, alexa, hey_mycroft"),
        (LOCAL + "wake_word:\n  models:\n    - alexa\n    - models/kitchen.json\n", 9, "wake_word.models[1]",
         "no such file: "),
        (LOCAL + "wake_word:\n  models: [alexa, alexa]\n", 7, "wake_word.models[1]", "listed twice"),
        (LOCAL + "wake_word:\n  models: []\n", 7, "wake_word.models", "at least one wake word"),
        (LOCAL + "wake_word:\n  models: [alexa]\n  cutoffs:\n    okay_nabu: 0.8\n", 9,
         "wake_word.cutoffs.okay_nabu", "no such model in wake_word.models (they are alexa)"),
        (LOCAL + "wake_word:\n  cutoffs:\n    okay_nabu: 1.5\n", 8, "wake_word.cutoffs.okay_nabu", "at most 0.999"),
        (LOCAL + "wake_word:\n  cutoffs: {okay_nabu: high}\n", 7, "wake_word.cutoffs.okay_nabu", "expected a number"),
        (LOCAL + "wake_word:\n  refractory_s: 0.1\n", 7, "wake_word.refractory_s", "at least 0.5"),
        (LOCAL + "wake_word:\n  follow_up_s: -1\n", 7, "wake_word.follow_up_s", "at least 0.0"),
    ],
)
def test_bad_values_name_file_line_and_key(text: str, line: int, key: str, words: str) -> None:
    e = _error(text)
    assert (e.file, e.line, e.key) == ("kiosk.yaml", line, key), str(e)
    assert words in str(e)
    assert str(e).startswith(f"kiosk.yaml:{line}: {key}: ")
    assert "\n" not in str(e)


def test_malformed_yaml_names_the_line() -> None:
    e = _error("audio:\n  volume: 0.5\n  bad: [unclosed\n")
    assert e.line == 4 and "invalid YAML" in str(e)
    e = _error("audio:\n\tvolume: 1\n")
    assert e.line == 2


def test_message_matches_the_documented_example() -> None:
    text = LOCAL + "\n" * 7 + "audio:\n  sample_rate: 44\n"
    assert str(_error(text)) == "kiosk.yaml:14: audio.sample_rate: expected one of 16000, 24000, 48000, got 44"


def test_env_expansion_with_defaults_and_types() -> None:
    text = LOCAL + "audio:\n  sample_rate: ${RATE}\n  input_device: ${MIC:-ReSpeaker}\n"
    c = load_config_text(text, env={"RATE": "16000"})
    assert c.audio.sample_rate == 16000 and c.audio.input_device == "ReSpeaker"
    with pytest.raises(ConfigError, match=r"audio\.sample_rate: expected one of"):
        load_config_text(text, env={"RATE": "44"})


def test_livekit_environment_overrides_the_file() -> None:
    env = {"LIVEKIT_URL": "wss://my.livekit.cloud", "LIVEKIT_API_KEY": "APIkey", "LIVEKIT_API_SECRET": "sec-ret"}
    c = load_config_text("livekit:\n  endpoint: https://t.example.com/\n", env=env)
    assert (c.livekit.url, c.livekit.api_key, c.livekit.api_secret) == tuple(env.values())
    assert c.livekit.token_source == "local"
    with pytest.raises(ConfigError, match="LIVEKIT_URL: malformed URL"):
        load_config_text(LOCAL, env={"LIVEKIT_URL": "not a url"})


def test_http_endpoint_is_allowed_only_to_localhost() -> None:
    c = load_config_text("livekit:\n  endpoint: http://127.0.0.1:8080/token\n")
    assert c.livekit.endpoint == "http://127.0.0.1:8080/token"


def test_frozen_sections_and_defaults() -> None:
    c = load_config_text(LOCAL)
    assert c.audio.sample_rate == 16000 and c.controls.button is None
    with pytest.raises(AttributeError):
        c.audio.sample_rate = 16000  # type: ignore[misc]


def test_check_output_masks_secrets() -> None:
    c = load_config_text(LOCAL + "  endpoint_headers:\n    Authorization: Bearer abcdef\n")
    shown = to_dict(c)
    assert shown["livekit"]["api_secret"] == "***"
    assert shown["livekit"]["endpoint_headers"] == {"Authorization": "***"}
    assert "s3cr3t-value" in secret_values(c) and "Bearer abcdef" in secret_values(c)


def test_world_readable_secret_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(LOCAL)
    f.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="device.config"):
        load_config(f, env={})
    assert "readable by others" in caplog.text and "s3cr3t" not in caplog.text
    caplog.clear()
    f.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="device.config"):
        load_config(f, env={})
    assert caplog.text == ""


def test_secrets_from_environment_do_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(LOCAL.replace("s3cr3t-value", "${SECRET}"))
    f.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="device.config"):
        load_config(f, env={"SECRET": "x" * 10})
    assert caplog.text == ""


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")


def test_wake_word_defaults_listen_for_okay_nabu_with_the_models_own_cutoff() -> None:
    ww = load_config_text(LOCAL).wake_word
    assert ww.models == ("okay_nabu",) and dict(ww.cutoffs) == {}
    assert (ww.refractory_s, ww.send_wake_phrase) == (2.0, True)
    assert 2.0 <= ww.follow_up_s <= 10.0


def _custom_model(folder: Path, name: str, tflite: bytes | None = None) -> None:
    from device.config.wake_models import builtin_dir

    folder.mkdir(parents=True, exist_ok=True)
    description = json.loads((builtin_dir() / "okay_nabu.json").read_text())
    description["model"] = f"{name}.tflite"
    (folder / f"{name}.json").write_text(json.dumps(description))
    (folder / f"{name}.tflite").write_bytes(tflite or (builtin_dir() / "okay_nabu.tflite").read_bytes())


def test_a_custom_wake_word_path_is_relative_to_the_config_file_and_made_absolute(tmp_path: Path) -> None:
    _custom_model(tmp_path / "models", "kitchen")
    path = tmp_path / "etc" / "device.yaml"
    path.parent.mkdir()
    path.write_text(LOCAL + "wake_word:\n  models: [../models/kitchen.json, alexa]\n  cutoffs: {kitchen: 0.9}\n")
    ww = load_config(path, env={}).wake_word
    assert ww.models == (str(tmp_path / "models" / "kitchen.json"), "alexa")
    assert dict(ww.cutoffs) == {"kitchen": 0.9}


def test_a_custom_wake_word_whose_model_file_is_missing_or_wrong_names_file_line_and_key(tmp_path: Path) -> None:
    _custom_model(tmp_path, "kitchen")
    (tmp_path / "kitchen.tflite").unlink()
    path = tmp_path / "device.yaml"
    path.write_text(LOCAL + "wake_word:\n  models:\n    - ./kitchen.json\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert (info.value.line, info.value.key) == (8, "wake_word.models[0]")
    assert "kitchen.tflite, which does not exist" in str(info.value)
    _custom_model(tmp_path, "kitchen", tflite=b"not a model at all")
    with pytest.raises(ConfigError, match="is not a TensorFlow Lite model"):
        load_config(path, env={})


def test_reference_file_is_complete_and_current() -> None:
    assert (ROOT / "config" / "reference.yaml").read_text() == reference_text(), (
        "config/reference.yaml is stale: run python -m device.config.reference > config/reference.yaml"
    )


def test_the_led_power_pin_may_not_share_a_pin_with_a_button_or_an_led() -> None:
    base = "livekit:\n  token_source: local\n  url: ws://h:1\n  api_key: k\n  api_secret: s\n"
    ok = load_config_text(base + "controls:\n  leds:\n    kind: apa102\n    power_pin: 5\n")
    assert ok.controls.leds.power_pin == 5
    with pytest.raises(ConfigError, match=r"<config>:11: controls.button.pin: GPIO 5 is already used by "
                                          r"controls.leds.power_pin"):
        load_config_text(base + "controls:\n  leds:\n    kind: apa102\n    power_pin: 5\n  button:\n    pin: 5\n")
    with pytest.raises(ConfigError, match=r"controls.leds.power_pin: GPIO 18 is already used by controls.leds.pins"):
        load_config_text(base + "controls:\n  leds:\n    kind: pwmled\n    pins: [18]\n    power_pin: 18\n")
