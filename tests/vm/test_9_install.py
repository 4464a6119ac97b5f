"""The installer on the live system (last: the uninstall removes what the other modules use): a second run
changes nothing and does not restart the service; --uninstall, then --purge, leave no file, user, group, unit
or IPC object behind."""

from __future__ import annotations

import pytest

from tests.vm.appliance import UNIT, Appliance

pytestmark = pytest.mark.vm

INSTALL = "bash /root/voice-device/scripts/install.sh"
AGAIN = f"{INSTALL} --profile appliance --alsa-card Loopback --find-links /root/wheelhouse"
# Every file the installation could touch, with its mode, owner, size and modification time.
WATCHED = ("/opt/voice-device /etc/voice-device /etc/systemd/system /etc/alsa /etc/udev/rules.d /usr/local/bin "
           "/var/lib/voice-device")
SNAPSHOT = (f"find {WATCHED} -printf '%p %m %u %g %s %T@\\n' 2>/dev/null | sort; "
            "getent passwd voice-device; getent group voice-device gpio spi audio")
# The whole root file system but what changes by itself (logs, caches, the test's own files).
EVERY_PATH = ("find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp -o -path /root "
              "-o -path /var/log -o -path /var/cache -o -path /var/tmp -o -path /var/lib/systemd \\) -prune -o "
              "-print | sort")


def test_a_second_install_changes_nothing_and_does_not_restart_the_service(appliance: Appliance) -> None:
    before_props = appliance.wait_active()
    before = appliance.sh(SNAPSHOT)
    r = appliance.machine.run(["bash", "-c", AGAIN], timeout=300)
    assert r.rc == 0, r.stderr
    print(f"\n{r.stderr.strip()}")
    for said in ("apt packages present", "is up to date", "keeping the existing /etc/voice-device/config.yaml"):
        assert said in r.stderr
    assert "try-restart" not in r.stderr and "running: useradd" not in r.stderr
    # its closing words: which file to edit and which command confirms it
    assert "1. edit /etc/voice-device/env" in r.stderr and "2. confirm it: sudo voice-device check" in r.stderr
    assert appliance.sh(SNAPSHOT) == before
    after_props = appliance.props()
    assert (after_props["MainPID"], after_props["NRestarts"]) == (before_props["MainPID"], before_props["NRestarts"])


def test_uninstall_then_purge_leave_nothing_behind(appliance: Appliance) -> None:
    uid, gid = appliance.sh("id -u voice-device; getent group voice-device | cut -d: -f3").split()
    # The VM's own drop-in (mock GPIO pins) is test equipment, not the installer's: it goes first.
    appliance.sh("rm -r /etc/systemd/system/voice-device.service.d && systemctl daemon-reload")
    installed = set(appliance.sh(EVERY_PATH, timeout=120).splitlines())

    r = appliance.machine.run(["bash", "-c", f"{INSTALL} --uninstall"], timeout=180)
    assert r.rc == 0, r.stderr
    assert "kept /etc/voice-device/config.yaml" in r.stderr
    assert appliance.sh("stat -c '%U:%G' /etc/voice-device/config.yaml /etc/voice-device/env").split() == \
        ["root:root", "root:root"]
    purge = appliance.machine.run(["bash", "-c", f"{INSTALL} --uninstall --purge"], timeout=180)
    assert purge.rc == 0, purge.stderr

    left = set(appliance.sh(EVERY_PATH, timeout=120).splitlines())
    assert left <= installed, f"the uninstall created {sorted(left - installed)}"
    removed = installed - left
    ours = ("/opt/voice-device", "/etc/voice-device", "/var/lib/voice-device", "/usr/local/bin/voice-device",
            "/etc/alsa/conf.d/60-voice-device.conf", "/etc/udev/rules.d/60-voice-device.rules",
            "/etc/systemd/system/voice-device.service",
            "/etc/systemd/system/multi-user.target.wants/voice-device.service")
    assert {p for p in removed if not p.startswith(ours)} == set()
    for path in ours[3:]:
        assert path in removed, path
    assert appliance.sh(f"find / -xdev \\( -uid {uid} -o -gid {gid} \\) -print 2>/dev/null | grep -v ^/proc || true")\
        .strip() == ""
    assert appliance.sh("getent passwd voice-device; getent group voice-device gpio spi || true").strip() == ""
    assert appliance.sh("getent group audio | cut -d: -f1").strip() == "audio"  # not the installer's to remove
    assert appliance.sh(f"ipcs -m -s | awk '$3 == \"{uid}\"' || true").strip() == ""
    unit = appliance.machine.run(["systemctl", "status", UNIT, "--no-pager"], timeout=60)
    assert unit.rc == 4 and "could not be found" in unit.stderr, unit.stdout + unit.stderr
    assert appliance.sh("pgrep -u " + uid + " || echo none").strip() == "none"
