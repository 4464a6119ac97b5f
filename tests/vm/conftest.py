"""The VM suite's fixtures: the cached appliance image, ONE booted VM for the whole suite, the stub SFU beside it.

Prerequisites (root, qemu-system-x86_64, debootstrap, mkfs.ext4, /dev/net/tun): missing under CI=true, the
suite FAILS (CI must prove this); elsewhere it is skipped with a sentence saying what to install. The image is
built (or taken from the cache) by scripts/vm-image.sh. Every module here sets `pytestmark = pytest.mark.vm`,
so `pytest -m vm` runs exactly this suite and `-m "not vm"` leaves it out.

The modules share the VM and run in name order (test_1_... to test_9_...): each test leaves the service
running with the suite's configuration, and the uninstall is the last thing done.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest

from tests import programs
from tests.programs import PROGRAMS
from tests.vm.appliance import TEST_CA, Appliance, BootFacts
from tests.vm.machine import BOARDS, HOST_IP, Machine, MachineError
from tests.vm.tokens import make_certificate
from tests.wire.harness import PYTHON, LineProcess, Stub, launch_stub, mint_token
from tests.wire.signals import speech

ROOT = Path(__file__).resolve().parents[2]
IMAGE_SCRIPT = ROOT / "scripts" / "vm-image.sh"
# From nothing: the amd64 image ~6 min; the arm64 one configures its packages and runs its installer under
# user-mode emulation (PyAudio compiles there, as on a Pi).
BUILD_TIMEOUT_S = {"amd64": 900, "arm64": 2400}
# What the suite changes in the installed profile, for a CPU that software emulation makes several times slower
# than a Pi 4 (on a shared machine): a room join took 10-20 s, past the profile's 10 s deadline; no echo canceller
# or noise suppression (no echo path on the loopback card). The session stays in its own process: inline, the
# daemon's first `import livekit` blocked its loop for 12 s and the SDK aborted the daemon ("FFI Panic: timed out
# waiting for ReadyForRoomEventRequest"). The session process may stay silent longer than a Pi's 10 s: on the
# emulated arm64, with the host loaded, a child said nothing for 10.2 s right after its room join and was stopped.
SLOW_BOARD = {
    "session:\n": "session:\n  connect_timeout_s: 60\n  agent_connect_timeout_s: 120\n  process_hang_s: 60\n",
    "audio:\n": "audio:\n  echo_cancellation: false\n  noise_suppression: false\n",
    "livekit:\n": "livekit:\n  http_timeout_s: 30\n",
}


def missing_prerequisites(arch: str) -> list[str]:
    missing = []
    if os.geteuid() != 0:
        missing.append("root (qemu on a tap in a network namespace, debootstrap, chroot)")
    tools = [BOARDS[arch].qemu, "debootstrap", "mkfs.ext4", "ip", "openssl"]
    if arch == "arm64":  # the image's packages configure, and its installer runs, in a chroot through binfmt_misc
        tools.append("qemu-aarch64-static")
    for tool in tools:
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt: {PROGRAMS[tool]})")
    if not os.path.exists("/dev/net/tun"):
        missing.append("/dev/net/tun (the VM's network)")
    return missing


def unavailable(sentence: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the VM suite cannot run in CI: {sentence}", pytrace=False)
    pytest.skip(sentence)


_helpers: list[LineProcess] = []  # the host-side processes beside the VM, stopped with it
_failed: dict[str, str] = {}  # a session fixture that failed is retried for every test: fail them at once instead


def fail(arch: str, sentence: str) -> NoReturn:
    _failed[arch] = sentence
    pytest.fail(sentence, pytrace=False)


def image_for(arch: str) -> Path:
    """The appliance's disk for `arch`, built by scripts/vm-image.sh (or taken from its cache)."""
    if arch in _failed:
        pytest.fail(_failed[arch], pytrace=False)
    missing = missing_prerequisites(arch)
    if missing:
        unavailable(f"the VM suite needs {', '.join(missing)}; `bash scripts/setup.sh` installs the packages")
    started = time.monotonic()
    try:
        r = subprocess.run(["bash", str(IMAGE_SCRIPT), "--arch", arch, "build"], capture_output=True, text=True,
                           timeout=BUILD_TIMEOUT_S[arch])
    except subprocess.TimeoutExpired:
        fail(arch, f"scripts/vm-image.sh --arch {arch} build took more than {BUILD_TIMEOUT_S[arch]} s")
    if r.returncode != 0 or not r.stdout.strip():
        fail(arch, f"scripts/vm-image.sh --arch {arch} build failed (the image is a prerequisite):\n{r.stderr[-4000:]}")
    image = Path(r.stdout.strip().splitlines()[-1])
    print(f"\nvm image {image} ready in {time.monotonic() - started:.0f} s")
    return image


@pytest.fixture(scope="package")
def vm_image() -> Path:
    return image_for("amd64")


@pytest.fixture(scope="package")
def vm_speech() -> dict[str, np.ndarray]:
    return spoken()


def spoken() -> dict[str, np.ndarray]:
    """What the test's person says into the appliance, and what the stub's agent answers (espeak-ng)."""
    missing = programs.missing("espeak-ng", "sox")
    if missing:
        unavailable(f"the VM suite's speech needs {missing}")
    return {"utterance": speech("Turn the kitchen lights on, please, and tell me the time."),
            "reply": speech("It is ten past nine, and the kitchen lights are on.", seed=5)}


def booted(arch: str, image: Path, vm_speech: dict[str, np.ndarray]) -> Iterator[Appliance]:
    """The booted appliance, the stub SFU in its namespace, and the secrets in /etc/voice-device/env; powered off
    (and its journal kept) when the generator is closed."""
    if arch in _failed:
        pytest.fail(_failed[arch], pytrace=False)
    # Not pytest's tmp_path: its numbered directories are pruned by any other pytest run on this machine.
    workdir = Path(os.environ.get("VOICE_DEVICE_VM_CACHE", ROOT / ".cache" / "vm")) / f"last-run-{arch}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        machine = Machine.boot(image, workdir, arch)
    except MachineError as e:
        fail(arch, f"the {arch} VM did not boot: {e}")
    try:
        try:
            app, _stub = set_up(machine, workdir, vm_speech)
        except Exception as e:  # said once, for every test that needs it
            fail(arch, f"the appliance could not be set up: {type(e).__name__}: {e}; console {machine.console}")
        yield app
    finally:
        with contextlib.suppress(MachineError):
            (workdir / "journal.txt").write_text(
                machine.run(["journalctl", "--no-pager", "-o", "short-monotonic"], timeout=120).stdout)
        while _helpers:
            _helpers.pop().stop()
        machine.close()
        print(f"\n{arch} vm boots (s): {[round(b, 1) for b in machine.boots]}; console {machine.console}")


# package scope: the VM is shut down after the last VM test, not left running (under emulation) through the rest
@pytest.fixture(scope="package")
def appliance(vm_image: Path, vm_speech: dict[str, np.ndarray]) -> Iterator[Appliance]:
    yield from booted("amd64", vm_image, vm_speech)


def set_up(machine: Machine, workdir: Path, vm_speech: dict[str, np.ndarray]) -> tuple[Appliance, Stub]:
    """Record the first boot; start the stub SFU and the token endpoint beside the VM; give the device its
    secrets (a credential for the endpoint, the API secret, a literal token), trust the endpoint's certificate,
    and restart it on the suite's configuration."""
    boot = BootFacts.read(machine)
    key, secret = "vmkey", secrets.token_hex(24)
    stub = launch_stub(machine.netns, workdir, "--api-key", key, "--api-secret", secret, "--agent-delay", "1")
    _helpers.append(stub.process)
    cert, private = make_certificate(workdir)
    tokens = LineProcess(machine.netns.command(
        [PYTHON, "-m", "tests.vm.tokens", "--cert", str(cert), "--key", str(private), "--livekit-url", stub.url,
         "--api-key", key, "--api-secret", secret, "--log", str(workdir / "token-requests.jsonl")]),
        workdir / "tokens.log")
    _helpers.append(tokens)
    port = tokens.wait_line(lambda line: line.startswith("tokens ready"), timeout=30).split("port=")[1].strip()
    machine.run(["mkdir", "-p", "/etc/vd-test"]).check()
    machine.write(TEST_CA, cert.read_text())  # the unit's vm-test drop-in points SSL_CERT_FILE here
    app = Appliance(machine, stub, boot, secrets={
        "VOICE_DEVICE_CREDENTIAL": secrets.token_hex(16),
        "LIVEKIT_API_SECRET": secret,  # alone (no LIVEKIT_API_KEY): it does not switch the source to local
        "VOICE_DEVICE_TOKEN": mint_token("vd-appliance", "room-literal", key, "not-" + secret),
    })
    app.tokens_url = f"https://{HOST_IP}:{port}"
    app.token_requests = workdir / "token-requests.jsonl"
    app.env = {"VOICE_DEVICE_TOKEN_ENDPOINT": f"{app.tokens_url}/ok",
               "VD_TEST_ECHO_ENDPOINT": f"{app.tokens_url}/echo-500", **app.secrets}
    app.write_env()
    installed = machine.run(["cat", "/etc/voice-device/config.yaml"]).check().stdout
    app.original_config = installed
    for section, replacement in SLOW_BOARD.items():
        assert section in app.original_config, section
        app.original_config = app.original_config.replace(section, replacement, 1)
    app.write_config(app.original_config)
    app.restart()
    return app, stub
