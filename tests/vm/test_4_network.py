"""A boot with the network cable out: the device comes up anyway (READY=1 never waits for the network), shows
why a session cannot start, and, once the cable is back, the same daemon (no restart) gets a token from the
endpoint and joins the room. The agent's answer is not awaited: joining proves the network path; what an agent
says is the wire suite's to prove."""

from __future__ import annotations

import json
import re

import pytest

from tests.polling import wait_for
from tests.vm.appliance import Appliance

pytestmark = pytest.mark.vm

JOINED = ("pre-connect-buffering", "initializing", "listening", "thinking", "speaking")


def test_a_boot_with_the_network_down_shows_the_failure_and_recovers_when_it_comes_up(appliance: Appliance) -> None:
    machine = appliance.machine
    machine.set_link(False)
    try:
        took = machine.reboot()
        print(f"\nreboot with the link down: agent back after {took:.0f} s")
        props = appliance.wait_active()
        assert appliance.sh("cat /sys/class/net/eth0/carrier").strip() == "0"
        active_at = int(appliance.props("ActiveEnterTimestampMonotonic")["ActiveEnterTimestampMonotonic"]) / 1e6
        print(f"unit active {active_at:.1f} s after the kernel started, with no network")
        assert props["NRestarts"] == "0" and appliance.wait_state("idle", timeout=60) == "idle"
        cursor = appliance.cursor()
        appliance.ctl("start")
        failure = wait_for(lambda: re.search(r"reason=unreachable[^\n]*", appliance.journal(cursor)), 120,
                           "the session's failure to reach the token endpoint in the log")
        print(f"shown: {failure.group(0)}")
        assert appliance.state().split(":")[0] in ("connecting", "failed"), appliance.state()
    finally:
        machine.set_link(True)
    requests = len(appliance.token_requests.read_text().splitlines()) if appliance.token_requests else 0
    # The supervisor retries with backoff: it joins by itself if an attempt is left; if they ran out before the
    # cable came back, the user's next press does.
    try:
        shown = appliance.wait_state(*JOINED, timeout=90)
        how = "by the supervisor's own retry"
    except AssertionError:
        appliance.ctl("end")
        appliance.wait_state("idle", timeout=60)
        appliance.ctl("start")
        shown = appliance.wait_state(*JOINED, timeout=240)
        how = "at the next press (the retries had run out)"
    print(f"after the link came back: {shown}, {how}")
    assert appliance.token_requests is not None
    sent = [json.loads(line) for line in appliance.token_requests.read_text().splitlines()[requests:]]
    assert any(r["path"] == "/ok" for r in sent), "no token was fetched after the link came back"
    appliance.ctl("end")  # the control connection still works: the same daemon answers
    appliance.wait_state("idle", timeout=60)
    after = appliance.props()
    assert (after["NRestarts"], after["MainPID"]) == ("0", props["MainPID"])
    journal = appliance.journal(cursor)
    assert "audio input lost" not in journal, journal
