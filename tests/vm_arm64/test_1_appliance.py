"""The installed appliance on arm64 under a real systemd: what tests/vm proves on x86_64, run again here (the
first boot through notify, the mic held by the voice-device user, the live security score, the watchdog), and what
only this architecture can show: the machine and every native library installed are aarch64, and the unit runs as
shipped, MemoryDenyWriteExecute and the system-call filter included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.vm.appliance import UNIT, Appliance
from tests.vm.test_1_systemd import (  # noqa: F401  (collected again here, against the arm64 appliance)
    test_a_stopped_daemon_is_killed_by_the_watchdog_and_restarted,
    test_systemd_analyze_security_of_the_live_unit_is_at_most_2_0,
    test_the_daemon_holds_the_alsa_capture_device_as_the_voice_device_user,
    test_the_first_boot_reaches_multi_user_with_the_unit_active_through_notify,
)

pytestmark = pytest.mark.vm_arm64

ROOT = Path(__file__).resolve().parents[2]
VENV = "/opt/voice-device/venv"
EM_AARCH64 = 183  # ELF e_machine
# Every shared object in the venv and what its ELF header says (class, machine), read by the guest's Python.
ELF_CENSUS = f"""
import json, pathlib, struct
found = {{}}
for p in pathlib.Path("{VENV}").rglob("*.so*"):
    if p.is_file() and not p.is_symlink():
        head = p.read_bytes()[:20]
        if head[:4] == b"\\x7fELF":
            found[str(p)] = [head[4], struct.unpack("<H", head[18:20])[0]]
print(json.dumps(found))
"""
# the native code the device runs: the SDK's core, the wake word's TFLite, its front end and VAD, numpy, PyAudio
MUST_HAVE = ("liblivekit_ffi", "libtensorflowlite_c", "micro_features_cpp", "micro_vad_cpp", "numpy/_core",
             "_portaudio")


def test_the_machine_and_every_native_library_installed_are_aarch64(appliance: Appliance) -> None:
    assert appliance.sh("uname -m; dpkg --print-architecture; getconf LONG_BIT").split() == ["aarch64", "arm64", "64"]
    census: dict[str, list[int]] = json.loads(appliance.sh(f"{VENV}/bin/python -c '{ELF_CENSUS}'", timeout=120))
    print(f"\n{len(census)} ELF shared objects in the venv")
    wrong = {path: head for path, head in census.items() if head != [2, EM_AARCH64]}  # ELFCLASS64, aarch64
    assert not wrong, wrong
    for part in MUST_HAVE:
        assert any(part in path for path in census), f"no {part} among {sorted(census)}"
    # PyAudio has no wheel on any Linux: the installer's pip compiled it here, as it does on a Pi
    given = appliance.sh("ls /root/wheelhouse | grep -i pyaudio").split()
    assert given and all(name.endswith(".tar.gz") for name in given), given


def test_the_unit_runs_as_shipped_with_memory_deny_write_execute_and_the_syscall_filter(appliance: Appliance) -> None:
    installed = appliance.sh(f"cat /etc/systemd/system/{UNIT}")
    assert installed == (ROOT / "systemd" / UNIT).read_text(), "the installer changed the unit"
    props = appliance.sh(f"systemctl show {UNIT} -p MemoryDenyWriteExecute -p SystemCallArchitectures "
                         "-p SystemCallFilter -p ActiveState -p NRestarts")
    assert "MemoryDenyWriteExecute=yes" in props and "SystemCallArchitectures=native" in props, props
    assert "SystemCallFilter=" in props and "SystemCallFilter=\n" not in props, props
    assert "ActiveState=active" in props, props
    # nothing the daemon ran was killed by the filter or refused by the W^X policy (seccomp's SIGSYS is logged by
    # the kernel as an audit line; a refused mprotect would have ended the daemon with an error)
    assert "SIGSYS" not in appliance.journal() and "audit: type=1326" not in appliance.sh("dmesg")
