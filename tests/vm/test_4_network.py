"""A boot with the network cable out: the device comes up anyway (READY=1 never waits for the network), shows
why a session cannot start, and connects once the cable is back, without systemd restarting it."""

from __future__ import annotations

import re

import pytest

from tests.polling import wait_for
from tests.vm.appliance import UNIT, Appliance

pytestmark = pytest.mark.vm


def test_a_boot_with_the_network_down_shows_the_failure_and_recovers_when_it_comes_up(appliance: Appliance) -> None:
    machine = appliance.machine
    machine.set_link(False)
    try:
        took = machine.reboot()
        print(f"\nreboot with the link down: agent back after {took:.0f} s")
        props = appliance.wait_active()
        assert appliance.sh("cat /sys/class/net/eth0/carrier").strip() == "0"
        active_at = int(appliance.props("ActiveEnterTimestampMonotonic")["ActiveEnterTimestampMonotonic"]) / 1e6
        chain = appliance.sh(f"systemd-analyze critical-chain {UNIT} --no-pager || true")
        print(f"unit active {active_at:.1f} s after the kernel started, with no network\n{chain.strip()}")
        assert props["NRestarts"] == "0" and appliance.status()["state"] == "idle"
        cursor = appliance.cursor()
        appliance.ctl("start")
        failure = wait_for(lambda: re.search(r"reason=unreachable[^\n]*", appliance.journal(cursor)), 120,
                           "the session's failure to reach the server in the log")
        print(f"shown: {failure.group(0)}")
        shown = appliance.status()
        assert shown["state"] in ("connecting", "reconnecting", "failed"), shown
    finally:
        machine.set_link(True)
    state = wait_for(lambda: (s := appliance.status())["state"] in ("listening", "failed", "idle") and s, 240,
                     "the session to connect (or to give up) once the link is back", every=2.0)
    if state["state"] != "listening":  # the retries ran out before the cable came back: the next press works
        assert state["state"] == "idle" or state["reason"] == "unreachable", state
        appliance.ctl("start")
        appliance.wait_state("listening", timeout=180)
    appliance.ctl("end")
    appliance.wait_state("idle", timeout=60)
    assert appliance.props()["NRestarts"] == "0"
