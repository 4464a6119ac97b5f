"""The systemd unit, checked without a running systemd: `verify` prints nothing, `security` exposure <= 2.0,
and the native libraries really run under its seccomp rules (MemoryDenyWriteExecute=, SystemCallFilter=)."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.programs import need

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "voice-device.service"
PROBE = Path(__file__).with_name("mdwe_probe.py")
UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")


@pytest.fixture(autouse=True)
def _systemd_analyze() -> None:
    need("systemd-analyze", "kill")  # verify checks that ExecReload's /bin/kill exists


def directives(name: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(f"{name}=")]


@pytest.fixture
def checkable_unit(tmp_path: Path) -> Path:
    """A copy whose ExecStart names a binary that exists here: verify refuses a missing one."""
    text = UNIT.read_text()
    assert "ExecStart=/opt/voice-device/venv/bin/voice-device run --config /etc/voice-device/config.yaml" in text
    copy = tmp_path / "voice-device.service"
    copy.write_text(text.replace("ExecStart=/opt/voice-device/venv/bin/voice-device", f"ExecStart={sys.executable}"))
    return copy


def test_systemd_analyze_verify_prints_nothing(checkable_unit: Path) -> None:
    # verify exits 0 even when it reports errors: any output at all is a failure.
    r = subprocess.run(["systemd-analyze", "verify", str(checkable_unit)], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


def test_verify_catches_a_broken_copy_of_the_unit(checkable_unit: Path) -> None:
    # The check above can fail: a misspelt key in the same unit is reported.
    checkable_unit.write_text(checkable_unit.read_text().replace("ProtectHome=yes", "ProtectHomes=yes"))
    r = subprocess.run(["systemd-analyze", "verify", str(checkable_unit)], capture_output=True, text=True, timeout=60)
    assert "ProtectHomes" in r.stdout + r.stderr


def test_security_exposure_is_at_most_2_0(checkable_unit: Path) -> None:
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(checkable_unit)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for voice-device.service: (\d+\.\d)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout
    # --threshold works on a x10 scale; it agrees with the parsed figure.
    t = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20", str(checkable_unit)],
                       capture_output=True, text=True, timeout=60)
    assert t.returncode == 0


def test_the_unit_keeps_the_promised_settings() -> None:
    text = UNIT.read_text()
    for line in ["Type=notify", "NotifyAccess=main", "Restart=on-failure", "User=voice-device",
                 "SupplementaryGroups=audio gpio spi", "Environment=LG_WD=%t/voice-device",
                 "EnvironmentFile=-/etc/voice-device/env", "ExecReload=/bin/kill -HUP $MAINPID",
                 "DevicePolicy=closed", "DeviceAllow=char-alsa rw", "DeviceAllow=char-gpiochip rw",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK", "CapabilityBoundingSet="]:
        assert f"\n{line}\n" in text, line
    assert "DynamicUser" not in text.replace("Not DynamicUser=", "")
    # a boot without network must not wait for it (network-online.target can take 2 minutes to give up)
    (after,) = directives("After")
    assert "network.target" in after.split() and "network-online.target" not in after.split()
    (watchdog,) = directives("WatchdogSec")
    assert int(watchdog) >= 10


def test_planned_restarts_alone_cannot_reach_the_units_start_limit() -> None:
    """systemd counts every start in StartLimitIntervalSec= against StartLimitBurst= — a restart after exit 75
    too (SuccessExitStatus= makes it no failure, not no start; the VM suite shows it on a real systemd). The daemon
    spaces its planned restarts by at least daemon.restart_min_interval_s (its smallest allowed value here):
    in the worst case, the starts they make in one interval stay below the burst, with room for a crash."""
    from device.config.schema import DaemonConfig

    (interval,), (burst,), (restart_sec,) = (directives(n) for n in ("StartLimitIntervalSec", "StartLimitBurst",
                                                                    "RestartSec"))
    assert directives("SuccessExitStatus") == ["75"] and directives("RestartForceExitStatus") == ["75"]
    spacing = DaemonConfig.__dataclass_fields__["restart_min_interval_s"].metadata["min"] + float(restart_sec)
    starts_in_one_interval = int(float(interval) // spacing) + 1  # the first start, then one every `spacing`
    assert starts_in_one_interval < int(burst), (starts_in_one_interval, burst)
    assert DaemonConfig().restart_min_interval_s >= spacing - float(restart_sec)


# ---- the unit's seccomp rules around the real libraries -------------------------------------------------------


@cache
def expand(item: str) -> frozenset[str]:
    """A syscall name or @group → the syscall names, groups expanded recursively by systemd itself."""
    if not item.startswith("@"):
        return frozenset({item})
    out = subprocess.run(["systemd-analyze", "syscall-filter", item], capture_output=True, text=True,
                         check=True, timeout=30).stdout.splitlines()
    names: set[str] = set()
    for line in out[1:]:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            names |= expand(entry)
    return frozenset(names)


def allowed_syscall_numbers() -> list[int]:
    allowed: set[str] = set()
    for value in directives("SystemCallFilter"):
        deny = value.startswith("~")
        names = set().union(*(expand(item) for item in value.lstrip("~").split()))
        allowed = allowed - names if deny else allowed | names
    numbers = dict(re.findall(r"#define __NR_(\w+) (\d+)", UNISTD.read_text()))
    return [int(numbers[name]) for name in sorted(allowed) if name in numbers]


def run_probe(*args: str) -> dict:
    r = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


EXPECTED_WORK = ["audio source, track and stream", "audio processing module", "resampler", "refused connect"]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="probe knows x86_64 and aarch64")
def test_livekit_and_pyaudio_run_under_memory_deny_write_execute() -> None:
    assert directives("MemoryDenyWriteExecute") == ["yes"]
    result = run_probe()
    assert result["filter_bites"] is True  # a W+X mapping was refused: the filter is in force
    assert result["livekit"] == EXPECTED_WORK
    assert result["session_process"] == "ready"


@pytest.mark.skipif(platform.machine() != "x86_64" or not UNISTD.exists(), reason="needs the x86_64 syscall table")
def test_livekit_and_pyaudio_run_under_the_units_system_call_filter() -> None:
    numbers = allowed_syscall_numbers()
    assert 250 < len(numbers) < 400  # @system-service minus the denied groups, not an empty or total list
    result = run_probe("--allow", ",".join(map(str, numbers)))
    assert result["filter_bites"] is True and result["denied_syscall_refused"] is True
    assert result["livekit"] == EXPECTED_WORK
    assert result["session_process"] == "ready"


def test_the_unit_lets_the_daemon_write_its_metrics_where_node_exporter_reads_them_by_default() -> None:
    from device.config.schema import MetricsConfig

    # optional ("-"): the unit starts where prometheus-node-exporter is not installed
    assert directives("ReadWritePaths") == [f"-{Path(MetricsConfig().textfile).parent}"]
