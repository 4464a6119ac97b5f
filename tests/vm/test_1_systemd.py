"""The installed unit under a real systemd (PID 1 of the VM): READY through Type=notify with all its hardening,
the ALSA device held by the voice-device user, reload, stop, the watchdog and the live security score."""

from __future__ import annotations

import re

import pytest

from tests.polling import wait_for
from tests.vm.appliance import UNIT, Appliance

pytestmark = pytest.mark.vm

BROKEN = "audio:\n  sample_rate: 44\n"


def test_the_first_boot_reaches_multi_user_with_the_unit_active_through_notify(appliance: Appliance) -> None:
    boot = appliance.boot
    print(f"\n{boot.analyze.strip()}")
    assert boot.system_state == "running", appliance.sh("systemctl --failed --no-pager")
    assert boot.props["Type"] == "notify"
    assert (boot.props["ActiveState"], boot.props["SubState"]) == ("active", "running")
    assert boot.props["NRestarts"] == "0"
    # STATUS= comes from the daemon itself: systemd shows the device state it sent with READY=1.
    assert boot.props["StatusText"] == "idle"
    assert boot.status["state"] == "idle"
    assert "Startup finished" in boot.analyze and "multi-user.target reached" in boot.analyze, boot.analyze


def test_the_daemon_holds_the_alsa_capture_device_as_the_voice_device_user(appliance: Appliance) -> None:
    props = appliance.wait_active()
    uid = int(appliance.sh("id -u voice-device"))
    # ALSA's own record of who opened the card's capture substream (dsnoop's server is the daemon's child).
    owners = [int(p) for p in re.findall(r"owner_pid\s*:\s*(\d+)",
                                         appliance.sh("cat /proc/asound/card0/pcm0c/sub*/status"))]
    assert owners, "nothing holds the loopback card's capture device 0"
    for pid in owners:
        assert appliance.pid_uid_and_unit(pid) == (uid, UNIT), f"pid {pid} (main {props['MainPID']})"
    metrics = appliance.status()["metrics"]
    assert metrics["mic_open"] is True
    first = metrics["audio_frames_captured"]
    wait_for(lambda: appliance.status()["metrics"]["audio_frames_captured"] > first, 30, "the mic to deliver")


def test_the_units_device_policy_is_enforced_by_this_systemd(appliance: Appliance) -> None:
    live = appliance.sh(f"systemctl show {UNIT} -p DevicePolicy -p DeviceAllow")
    assert "DevicePolicy=closed" in live and "char-alsa rw" in live, live
    common = ["systemd-run", "--wait", "--pipe", "--quiet", "-p", "User=voice-device", "-p", "DevicePolicy=closed"]
    record = ["arecord", "-q", "-D", "plughw:Loopback,1", "-f", "S16_LE", "-r", "48000", "-d", "1", "/dev/null"]
    allowed = appliance.machine.run([*common, "-p", "DeviceAllow=char-alsa rw", *record], timeout=90)
    assert allowed.rc == 0, allowed.stderr
    # the same open without the allowance: the device cgroup refuses it (ALSA itself only says "No such device")
    probe = ["python3", "-c", "import os; os.open('/dev/snd/controlC0', os.O_RDONLY)"]
    refused = appliance.machine.run([*common, *probe], timeout=90)
    assert refused.rc != 0 and "PermissionError: [Errno 1] Operation not permitted" in refused.stderr, refused.stderr
    opened = appliance.machine.run([*common, "-p", "DeviceAllow=char-alsa rw", *probe], timeout=90)
    assert opened.rc == 0, opened.stderr


def test_systemd_analyze_security_of_the_live_unit_is_at_most_2_0(appliance: Appliance) -> None:
    out = appliance.machine.run(["systemd-analyze", "security", UNIT, "--no-pager"], timeout=120).stdout
    m = re.search(r"Overall exposure level for voice-device.service: (\d+\.\d)", out)
    assert m, out[-2000:]
    print(f"\nlive exposure {m.group(1)}")
    assert float(m.group(1)) <= 2.0, out


def test_reload_keeps_the_running_config_when_the_new_one_is_broken_then_takes_the_fixed_one(
        appliance: Appliance) -> None:
    before = appliance.wait_active()
    reloads = appliance.status()["metrics"]["reloads"]
    cursor = appliance.cursor()
    appliance.write_config(BROKEN)
    try:
        appliance.reload()
        line = appliance.wait_journal("reload failed", cursor, 60)
        assert "config.yaml:2: audio.sample_rate: expected one of 16000, 24000, 48000, got 44" in line
        status = appliance.status()
        assert "reload failed, old configuration kept" in status["metrics"]["reload_error"]
        assert appliance.props()["MainPID"] == before["MainPID"]
    finally:
        appliance.write_config(appliance.original_config)
    appliance.reload()
    wait_for(lambda: appliance.status()["metrics"].get("reloads") == reloads + 1, 60, "the fixed config's reload")
    after = appliance.wait_active()  # READY=1 after the reload (systemd shows `reloading` until then)
    assert "reload_error" not in appliance.status()["metrics"]
    assert (after["MainPID"], after["ActiveState"], after["NRestarts"]) == (before["MainPID"], "active",
                                                                            before["NRestarts"])


def test_systemctl_stop_finishes_within_the_stop_timeout_with_a_clean_exit(appliance: Appliance) -> None:
    appliance.wait_active()
    limit = int(appliance.props("TimeoutStopUSec")["TimeoutStopUSec"].rstrip("s") or 0) \
        if appliance.props("TimeoutStopUSec")["TimeoutStopUSec"].endswith("s") else 15
    cursor = appliance.cursor()
    took = appliance.elapsed(f"systemctl stop {UNIT}", timeout=120)
    print(f"\nsystemctl stop took {took:.1f} s (TimeoutStopSec={limit})")
    props = appliance.props()
    journal = appliance.journal(cursor)
    try:
        assert took <= limit, journal
        assert (props["ActiveState"], props["Result"], props["ExecMainStatus"]) == ("inactive", "success", "0")
        assert "Killing" not in journal and "stopping signal=SIGTERM" in journal
    finally:
        appliance.restart()


def test_a_stopped_daemon_is_killed_by_the_watchdog_and_restarted(appliance: Appliance) -> None:
    before = appliance.wait_active()
    watchdog_s = int(before["WatchdogUSec"].rstrip("s"))
    cursor = appliance.cursor()
    stopped_at = float(appliance.sh(f"kill -STOP {before['MainPID']}; cut -d' ' -f1 /proc/uptime"))
    after = appliance.wait_active(timeout=watchdog_s + 15 + 3 + 120, other_than_pid=before["MainPID"])
    journal = appliance.journal(cursor)
    m = re.search(r"\[\s*([\d.]+)\] \S+ systemd\[1\]: voice-device.service: Watchdog timeout", journal)
    assert m, journal
    print(f"\nwatchdog fired {float(m.group(1)) - stopped_at:.1f} s after SIGSTOP (WatchdogSec={watchdog_s})")
    assert float(m.group(1)) - stopped_at <= watchdog_s + 1
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    assert appliance.wait_state("idle", timeout=60)
