"""scripts/install.sh into a temporary root: a real venv and files under the prefix; users, groups, apt and
systemctl printed, not run. Twice (idempotent), then --uninstall (the config stays)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.tokenserver.harness import tokens

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install.sh"

pytestmark = pytest.mark.skipif(shutil.which("python3") is None, reason="needs python3 for the venv")


def build_wheel(dest: Path) -> Path:
    """A minimal, valid wheel of the checkout, built without network or a build backend."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    dist = f"voice_device-{version}.dist-info"
    files = {str(p.relative_to(ROOT)): p.read_bytes() for p in sorted((ROOT / "device").rglob("*.py"))}
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: voice-device\nVersion: {version}\n".encode()
    files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{dist}/entry_points.txt"] = b"[console_scripts]\nvoice-device = device.cli:main\n"
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for name, data in files.items()]
    files[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    wheel = dest / f"voice_device-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return wheel


def install(*args: str, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=300, input=stdin,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})})


def tree(root: Path) -> dict[str, tuple[int, str, int]]:
    """Every file under root: mode, content hash and modification time (a rewrite changes it)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else ""
        out[str(p.relative_to(root))] = (st.st_mode, digest, st.st_mtime_ns if p.is_file() else 0)
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    prefix = tmp_path_factory.mktemp("root")
    wheel = build_wheel(tmp_path_factory.mktemp("wheel"))
    r = install("--prefix", str(prefix), "--profile", "kiosk", "--wheel", str(wheel), "--offline")
    assert r.returncode == 0, r.stderr
    return prefix, wheel, r


def test_install_creates_a_working_venv(installed) -> None:
    prefix, _, _ = installed
    exe = prefix / "opt/voice-device/venv/bin/voice-device"
    r = subprocess.run([str(exe), "version"], capture_output=True, text=True, timeout=60, cwd=prefix,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 0 and r.stdout.startswith("voice-device "), r.stderr


def test_install_writes_the_profile_config_private_to_the_service_group(installed) -> None:
    prefix, _, r = installed
    config = prefix / "etc/voice-device/config.yaml"
    assert config.read_text() == (ROOT / "config/kiosk.yaml").read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert "would run: chown root:voice-device " + str(config) in r.stderr
    env = prefix / "etc/voice-device/env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600 and "VOICE_DEVICE_CREDENTIAL" in env.read_text()


def test_install_puts_the_unit_in_place_and_only_prints_system_changes(installed) -> None:
    prefix, _, r = installed
    assert (prefix / "etc/systemd/system/voice-device.service").read_text() == \
        (ROOT / "systemd/voice-device.service").read_text()
    assert "would run: systemctl enable voice-device.service" in r.stderr
    if subprocess.run(["getent", "passwd", "voice-device"], capture_output=True).returncode != 0:
        assert "would run: useradd --system --gid voice-device --groups audio,gpio,spi" in r.stderr
    assert "running:" not in r.stderr  # nothing outside the prefix was touched


def test_a_second_install_changes_nothing(installed) -> None:
    prefix, wheel, _ = installed
    before = tree(prefix)
    r = install("--prefix", str(prefix), "--wheel", str(wheel), "--offline")  # no --profile: the config exists
    assert r.returncode == 0, r.stderr
    assert "is up to date" in r.stderr and "keeping the existing" in r.stderr
    assert tree(prefix) == before


def test_an_existing_config_is_kept_even_with_another_profile(installed) -> None:
    prefix, wheel, _ = installed
    config = prefix / "etc/voice-device/config.yaml"
    config.write_text(config.read_text() + "# edited by the owner\n")
    r = install("--prefix", str(prefix), "--profile", "appliance", "--wheel", str(wheel), "--offline")
    assert r.returncode == 0, r.stderr
    assert config.read_text().endswith("# edited by the owner\n")
    assert config.read_text().startswith((ROOT / "config/kiosk.yaml").read_text())


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    r = install("--prefix", str(tmp_path), "--profile", "kiosk", "--dry-run", "--offline")
    assert r.returncode == 0, r.stderr
    assert list(tmp_path.iterdir()) == []
    assert "would run: python3 -m venv" in r.stderr


def test_a_fresh_install_without_a_profile_says_which_to_choose(tmp_path: Path) -> None:
    r = install("--prefix", str(tmp_path), "--dry-run", "--offline")
    assert r.returncode == 2
    assert "choose a profile with --profile kiosk|smart-speaker|appliance" in r.stderr


def fake_platform(tmp_path: Path, kernel: str, userland: str | None) -> dict[str, str]:
    """`uname -m` and `dpkg --print-architecture` as another system answers them (None: no dpkg)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "uname").write_text(f"#!/bin/sh\necho {kernel}\n")
    (fake / "dpkg").write_text(f"#!/bin/sh\necho {userland}\n" if userland else "#!/bin/sh\nexit 127\n")
    for tool in ("uname", "dpkg"):
        (fake / tool).chmod(0o755)
    return {"PATH": f"{fake}:{os.environ['PATH']}"}


@pytest.mark.parametrize(("kernel", "userland"), [("armv7l", "armhf"), ("aarch64", "armhf"), ("armv6l", "armel")],
                         ids=["32-bit", "64-bit-kernel-32-bit-userland", "pi-zero"])
def test_a_32_bit_userland_is_refused_with_the_reason_whatever_the_kernel(tmp_path: Path, kernel: str,
                                                                          userland: str) -> None:
    """32-bit Raspberry Pi OS on a Pi 4/5 boots a 64-bit kernel: `uname -m` says aarch64, pip installs armhf wheels
    and finds no livekit. The userland's architecture decides, with one sentence saying what to install."""
    r = install("--prefix", str(tmp_path / "root"), "--profile", "kiosk", env=fake_platform(tmp_path, kernel, userland))
    assert r.returncode == 1
    assert f"32-bit system (userland {userland}, kernel {kernel})" in r.stderr, r.stderr
    assert "Raspberry Pi OS Lite (64-bit, bookworm)" in r.stderr
    assert not (tmp_path / "root" / "opt").exists()


def test_setup_refuses_a_32_bit_userland_on_a_64_bit_kernel_too(tmp_path: Path) -> None:
    r = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=60,
                       env={**os.environ, **fake_platform(tmp_path, "aarch64", "armhf"),
                            "VOICE_DEVICE_VENV": str(tmp_path / "venv")})
    assert r.returncode == 1
    assert "32-bit system (userland armhf, kernel aarch64)" in r.stderr, r.stderr
    assert not (tmp_path / "venv").exists()


def test_a_64_bit_userland_is_accepted(tmp_path: Path) -> None:
    r = install("--prefix", str(tmp_path / "root"), "--profile", "kiosk", "--dry-run", "--offline",
                env=fake_platform(tmp_path, "aarch64", "arm64"))
    assert r.returncode == 0, r.stderr


def test_uninstall_removes_what_it_added_and_keeps_the_config(installed, tmp_path: Path) -> None:
    prefix, _, _ = installed
    # Work on a copy: the module's other tests share the installed prefix.
    copy = tmp_path / "root"
    shutil.copytree(prefix, copy, symlinks=True)
    r = install("--prefix", str(copy), "--uninstall")
    assert r.returncode == 0, r.stderr
    assert not (copy / "opt/voice-device").exists()
    assert not (copy / "etc/systemd/system/voice-device.service").exists()
    assert (copy / "etc/voice-device/config.yaml").exists() and (copy / "etc/voice-device/env").exists()
    assert not (copy / "etc/udev/rules.d/60-voice-device.rules").exists()
    assert "would run: systemctl disable --now voice-device.service" in r.stderr
    again = install("--prefix", str(copy), "--uninstall")
    assert again.returncode == 0, again.stderr


def test_the_command_is_put_on_path_and_the_end_says_what_to_edit_and_how_to_confirm(installed) -> None:
    prefix, _, r = installed
    link = prefix / "usr/local/bin/voice-device"
    assert link.is_symlink() and os.readlink(link) == "/opt/voice-device/venv/bin/voice-device"
    tail = r.stderr[r.stderr.index("install: done. Next:"):]
    assert f"edit {prefix}/etc/voice-device/env" in tail and "VOICE_DEVICE_TOKEN_ENDPOINT" in tail
    assert "tokens.example.invalid" in tail and "sudo voice-device check" in tail


def test_alsa_card_makes_that_card_the_shared_default_once(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    root = tmp_path / "root"
    args = ["--prefix", str(root), "--profile", "appliance", "--wheel", str(wheel), "--offline", "--alsa-card",
            "seeed2micvoicec"]
    r = install(*args)
    assert r.returncode == 0, r.stderr
    conf = root / "etc/alsa/conf.d/60-voice-device.conf"
    text = conf.read_text()
    assert 'capture.pcm "voice_device_mic"' in text and 'playback.pcm "voice_device_speaker"' in text
    assert text.count('pcm "hw:CARD=seeed2micvoicec,DEV=0"') == 2 and "type dsnoop" in text and "type dmix" in text
    assert "ipc_gid audio" in text
    mic, speaker = (int(k) for k in re.findall(r"ipc_key (\d+)\n", text))
    assert abs(mic + 2 - speaker) > 1  # dsnoop uses ipc_key + 2, dmix ipc_key and ipc_key + 1
    before = conf.stat().st_mtime_ns
    again = install(*args)
    assert "60-voice-device.conf is up to date" in again.stderr and conf.stat().st_mtime_ns == before
    gone = install("--prefix", str(root), "--uninstall", "--purge")
    assert gone.returncode == 0, gone.stderr
    assert not conf.exists() and not (root / "etc/voice-device").exists()
    assert not (root / "usr/local/bin/voice-device").exists()


def test_a_sound_server_keeps_alsa_to_itself(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/alsa/conf.d").mkdir(parents=True)
    (root / "etc/alsa/conf.d/99-pulse.conf").write_text("pcm.!default pulse\n")
    r = install("--prefix", str(root), "--profile", "kiosk", "--dry-run", "--offline", "--alsa-card", "0")
    assert r.returncode == 0, r.stderr
    assert "a sound server owns ALSA's default here" in r.stderr
    assert not (root / "etc/alsa/conf.d/60-voice-device.conf").exists()


GPIO_LINE = 'SUBSYSTEM=="gpio", GROUP="gpio", MODE="0660"'
SPI_LINE = 'SUBSYSTEM=="spidev", GROUP="spi", MODE="0660"'


def test_a_udev_rule_gives_the_gpio_chips_and_spi_devices_to_their_groups_where_no_rule_does(installed) -> None:
    """Plain Debian leaves /dev/gpiochip* and /dev/spidev* to root: the daemon (voice-device, in the gpio and spi
    groups) could not open its button, LEDs or LED ring (tests/vm/test_5_gpio.py on a real chip)."""
    prefix, _, r = installed
    rule = prefix / "etc/udev/rules.d/60-voice-device.rules"
    lines = rule.read_text().splitlines()
    assert GPIO_LINE in lines and SPI_LINE in lines
    assert stat.S_IMODE(rule.stat().st_mode) == 0o644
    assert "writing " + str(rule) in r.stderr


@pytest.mark.parametrize(("theirs", "ours"), [([GPIO_LINE, SPI_LINE], None), ([GPIO_LINE], [SPI_LINE])],
                         ids=["raspberry-pi-os", "gpio-only"])
def test_no_udev_rule_is_added_for_what_another_rule_already_gives(tmp_path: Path, theirs: list[str],
                                                                   ours: list[str] | None) -> None:
    """Raspberry Pi OS's 99-com.rules gives both to their groups: the installer adds nothing of its own there."""
    root = tmp_path / "root"
    (root / "etc/udev/rules.d").mkdir(parents=True)
    (root / "etc/udev/rules.d/99-com.rules").write_text("\n".join(['SUBSYSTEM=="input", GROUP="input"', *theirs]))
    wheel = build_wheel(tmp_path)
    r = install("--prefix", str(root), "--profile", "kiosk", "--wheel", str(wheel), "--offline")
    assert r.returncode == 0, r.stderr
    rule = root / "etc/udev/rules.d/60-voice-device.rules"
    if ours is None:
        assert not rule.exists() and "udev already gives the GPIO chips and SPI devices" in r.stderr
    else:
        assert [line for line in rule.read_text().splitlines() if not line.startswith("#")] == ours


def test_env_file_merges_an_enrolments_lines_replacing_keys_keeping_the_rest_and_never_printing_values(
        installed, tmp_path: Path) -> None:
    prefix, wheel, _ = installed
    copy = tmp_path / "root"  # a copy: the module's other tests share the installed prefix
    shutil.copytree(prefix, copy, symlinks=True)
    env = copy / "etc/voice-device/env"
    env.write_text(env.read_text() + "VOICE_DEVICE_AGENT=front-desk\nVOICE_DEVICE_CREDENTIAL=the-old-one\n")
    enrolment = tokens("enrol", "--store", str(tmp_path / "devices.sqlite"), "--device", "kiosk-7", "--group",
                       "kiosks", "--endpoint", "https://tokens.example.com/voice-device").stdout
    credential = enrolment.split("VOICE_DEVICE_CREDENTIAL=")[1].strip()
    r = install("--prefix", str(copy), "--wheel", str(wheel), "--offline", "--env-file", "-", stdin=enrolment)
    assert r.returncode == 0, r.stderr
    lines = env.read_text().splitlines()
    assert lines.count(f"VOICE_DEVICE_CREDENTIAL={credential}") == 1 and "the-old-one" not in env.read_text()
    assert "VOICE_DEVICE_TOKEN_ENDPOINT=https://tokens.example.com/voice-device" in lines
    assert "VOICE_DEVICE_AGENT=front-desk" in lines and "# VOICE_DEVICE_CREDENTIAL=" in lines  # the rest is kept
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert credential not in r.stderr + r.stdout and "tokens.example.com" not in r.stderr
    assert "setting VOICE_DEVICE_TOKEN_ENDPOINT VOICE_DEVICE_CREDENTIAL in" in r.stderr
    assert "holds the lines --env-file gave" in r.stderr[r.stderr.index("install: done. Next:"):]
    (tmp_path / "lines.env").write_text(enrolment)
    before = tree(copy)
    again = install("--prefix", str(copy), "--wheel", str(wheel), "--offline", "--env-file",
                    str(tmp_path / "lines.env"))
    assert again.returncode == 0 and "already holds" in again.stderr, again.stderr
    assert tree(copy) == before


def test_env_file_with_a_line_that_is_not_key_value_changes_nothing_and_does_not_echo_it(
        installed, tmp_path: Path) -> None:
    prefix, wheel, _ = installed
    copy = tmp_path / "root"
    shutil.copytree(prefix, copy, symlinks=True)
    before = tree(copy)
    r = install("--prefix", str(copy), "--wheel", str(wheel), "--offline", "--env-file", "-",
                stdin="# from the enrolment\nVOICE_DEVICE_CREDENTIAL=abc\nsecret-looking junk\n")
    assert r.returncode == 2 and "line 3 is not KEY=VALUE" in r.stderr
    assert "junk" not in r.stderr and "abc" not in r.stderr
    assert tree(copy) == before
