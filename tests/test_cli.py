"""The command line as a user meets it: exit codes, one-line errors, tokens, devices."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    return subprocess.run([sys.executable, "-m", "device", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=60)


REAL = {"VOICE_DEVICE_TOKEN_ENDPOINT": "https://tokens.acme-voice.io/device", "VOICE_DEVICE_CREDENTIAL": "k3y"}


@pytest.mark.parametrize("profile", ["kiosk", "smart-speaker", "appliance", "demo"])
def test_check_accepts_every_profile_once_its_placeholders_are_set(profile: str) -> None:
    r = run("check", "--config", f"config/{profile}.yaml", env=REAL)
    assert r.returncode == 0, r.stderr
    assert "token_source:" in r.stdout and "valid" in r.stderr


@pytest.mark.parametrize("profile", ["kiosk", "smart-speaker", "appliance"])
def test_check_calls_a_profiles_placeholders_an_error_with_the_line_and_what_to_set(profile: str) -> None:
    r = run("check", "--config", f"config/{profile}.yaml")
    text = (ROOT / "config" / f"{profile}.yaml").read_text().splitlines()
    endpoint = next(i for i, line in enumerate(text, 1) if line.strip().startswith("endpoint:"))
    header = next(i for i, line in enumerate(text, 1) if "Authorization:" in line)
    assert r.returncode == 2 and r.stdout == "" and ": valid" not in r.stderr
    assert r.stderr.splitlines() == [
        f"voice-device: {profile}.yaml:{endpoint}: livekit.endpoint: still the profile's placeholder "
        "(https://tokens.example.invalid/voice-device): set VOICE_DEVICE_TOKEN_ENDPOINT in /etc/voice-device/env "
        "(or replace the value here)",
        f"voice-device: {profile}.yaml:{header}: livekit.endpoint_headers.Authorization: still the profile's "
        "placeholder (a placeholder credential): set VOICE_DEVICE_CREDENTIAL in /etc/voice-device/env (or replace "
        "the value here)",
    ]


@pytest.mark.parametrize("simulate", [(), ("--simulate",)], ids=["run", "run --simulate"])
@pytest.mark.parametrize("profile", ["kiosk", "smart-speaker", "appliance"])
def test_run_refuses_a_profiles_placeholders_as_check_does_before_starting_anything(
        profile: str, simulate: tuple[str, ...]) -> None:
    checked = run("check", "--config", f"config/{profile}.yaml")
    r = run("run", "--config", f"config/{profile}.yaml", *simulate)
    assert r.returncode == checked.returncode == 2
    assert r.stderr.splitlines() == checked.stderr.splitlines()  # the same sentences, nothing else (no log yet)
    assert "still the profile's placeholder" in r.stderr


def test_check_reads_the_env_file_the_service_gets(tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.write_text("# secrets\nVOICE_DEVICE_TOKEN_ENDPOINT='https://tokens.acme-voice.io/device'\n"
                   "VOICE_DEVICE_CREDENTIAL=k3y\n")
    half = tmp_path / "half"
    half.write_text("VOICE_DEVICE_CREDENTIAL=k3y\n")
    assert run("check", "--config", "config/kiosk.yaml", "--env", str(env)).returncode == 0
    r = run("check", "--config", "config/kiosk.yaml", "--env", str(half))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "VOICE_DEVICE_TOKEN_ENDPOINT" in r.stderr


def test_check_says_when_it_cannot_read_the_env_file(tmp_path: Path) -> None:
    r = run("check", "--config", "config/demo.yaml", "--env", str(tmp_path / "missing"))
    assert r.returncode == 0
    assert f"cannot read {tmp_path / 'missing'}" in r.stderr and "Traceback" not in r.stderr


def test_check_accepts_a_literal_reserved_name_only_where_the_source_does_not_use_it(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("livekit:\n  token_source: local\n  url: ws://10.0.0.5:7880\n  api_key: k\n  api_secret: s\n"
                 "  endpoint: https://tokens.example.invalid/x\n")
    f.chmod(0o600)
    assert run("check", "--config", str(f)).returncode == 0
    f.write_text("livekit:\n  token_source: local\n  url: wss://lk.example.com\n  api_key: k\n  api_secret: s\n")
    r = run("check", "--config", str(f))
    assert r.returncode == 2
    assert "c.yaml:3: livekit.url: still the profile's placeholder (wss://lk.example.com): replace it" in r.stderr


def test_check_masks_secrets_in_its_output() -> None:
    r = run("check", "--config", "config/demo.yaml", env={"LIVEKIT_API_SECRET": "super-secret-value"})
    assert r.returncode == 0
    assert "super-secret-value" not in r.stdout + r.stderr and "api_secret: '***'" in r.stdout


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        ("audio:\n  smaple_rate: 16000\n", "bad.yaml:2: audio.smaple_rate: unknown key; did you mean 'sample_rate'?"),
        ("audio:\n  volume: [1]\n", "bad.yaml:2: audio.volume: expected a single value"),
        ("audio:\n  sample_rate: 44\n", "bad.yaml:2: audio.sample_rate: expected one of 16000, 24000, 48000, got 44"),
        ("livekit:\n  endpoint: ftp:/x\n", "bad.yaml:2: livekit.endpoint: malformed URL"),
        ("audio: {volume: 0.5\n", "bad.yaml:2: invalid YAML"),
    ],
)
def test_check_rejects_bad_config_with_one_line(tmp_path: Path, content: str, expect: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    r = run("check", "--config", str(f))
    assert r.returncode == 2
    assert expect in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_token_prints_a_jwt_dispatching_the_agent() -> None:
    r = run("token", "--api-key", "devkey", "--api-secret", "secret", "--room", "r1", "--identity", "dev1",
            "--agent", "my-agent")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert len(r.stdout.strip().splitlines()) == 1
    claims = _claims(token)
    assert claims["sub"] == "dev1" and claims["iss"] == "devkey"
    assert claims["video"]["roomJoin"] is True and claims["video"]["room"] == "r1"
    assert claims["roomConfig"]["agents"][0]["agentName"] == "my-agent"
    assert claims["exp"] - claims["nbf"] == 600


def test_token_reads_credentials_from_the_environment_and_ttl() -> None:
    r = run("token", "--room", "r", "--identity", "i", "--ttl", "2h",
            env={"LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s"})
    assert r.returncode == 0, r.stderr
    claims = _claims(r.stdout.strip())
    assert claims["exp"] - claims["nbf"] == 7200 and "roomConfig" not in claims


def test_token_without_credentials_says_what_to_do() -> None:
    r = run("token", "--room", "r", "--identity", "i")
    assert r.returncode == 2 and "--api-key" in r.stderr and "Traceback" not in r.stderr


def test_version() -> None:
    r = run("version")
    assert r.returncode == 0 and r.stdout.startswith("voice-device ")


@pytest.mark.audio
def test_devices_lists_the_virtual_rig(audio_rig) -> None:
    r = subprocess.run([sys.executable, "-m", "device", "devices", "--json"], cwd=ROOT, capture_output=True,
                       text=True, env=audio_rig.env(), timeout=60)
    assert r.returncode == 0, r.stderr
    devices = json.loads(r.stdout)
    names = {d["name"] for d in devices}
    assert {"pulse", "default"} <= names
    fields = {"index", "name", "max_input_channels", "max_output_channels", "default_sample_rate",
              "is_default_input", "is_default_output"}
    assert all(set(d) == fields for d in devices)
    default = next(d for d in devices if d["name"] == "default")
    assert default["is_default_input"] and default["is_default_output"]
    assert default["max_input_channels"] > 0 and default["max_output_channels"] > 0
    # PulseAudio's own defaults behind ALSA's pulse plugin are the rig's mic and spk.
    info = audio_rig.pactl("info")
    assert "Default Sink: spk" in info and "Default Source: mic" in info


def test_ctl_help_names_every_control_command_from_the_one_declaration() -> None:
    from device.daemon.commands import COMMANDS

    r = subprocess.run([sys.executable, "-m", "device", "--help"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "COLUMNS": "400"})  # one line per command: argparse wraps at hyphens
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("ctl"))
    for name in COMMANDS:  # volume-up and volume-down were missing from the hand-kept list
        assert name in line, (name, line)
