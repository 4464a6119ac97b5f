"""Planned restarts and secrets under the real systemd, with sessions that FAIL (no room is needed for either):

- the token endpoint answers 500 and echoes the device's credential in the body; the session fails, the user ends
  it, and the daemon — idle after a session with RSS above `daemon.restart_above_rss_mb` (1 MB here) — exits 75:
  systemd restarts it as a success (`Result=success`, `NRestarts` + 1, no start-limit hit);
- the new process fails a second session (a literal token the server refuses) and, bloated again, defers its
  planned restart (`daemon.restart_min_interval_s` since the first one), so planned restarts cannot reach the
  unit's start limit — which counts them: a transient unit that exits 75 shows systemd stopping it at the limit;
- after both, the whole journal holds none of the secrets (the credential, the API secret, the literal token)
  nor any token at all.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from tests.polling import wait_for
from tests.vm.appliance import Appliance

pytestmark = pytest.mark.vm

BLOATED = "restart_above_rss_mb: 300"
ENDPOINT = "endpoint: ${VOICE_DEVICE_TOKEN_ENDPOINT:-https://tokens.example.invalid/voice-device}"


@dataclass
class Restarts:
    before: dict[str, str]
    first: dict[str, str]  # after the planned restart
    second: dict[str, str]  # after the second failed session, the restart deferred
    journal: str
    failures: list[str]


def literal(config: str, url: str) -> str:
    """The installed config with a literal token (VOICE_DEVICE_TOKEN from the env file) for the stub SFU."""
    lines = [line for line in config.splitlines() if not line.startswith(("  token_source:", "  endpoint:"))]
    text = "\n".join(lines) + "\n"
    return text.replace("livekit:\n", f"livekit:\n  token_source: literal\n  url: {url}\n"
                                      "  token: ${VOICE_DEVICE_TOKEN}\n", 1)


def fail_a_session(appliance: Appliance) -> str:
    appliance.ctl("start")
    shown = appliance.wait_state("failed", timeout=120)
    appliance.ctl("end")
    return shown


@pytest.fixture(scope="module")
def restarts(appliance: Appliance) -> Restarts:
    assert BLOATED in appliance.original_config and ENDPOINT in appliance.original_config
    bloated = appliance.original_config.replace(BLOATED, "restart_above_rss_mb: 1")
    cursor = appliance.cursor()
    failures = []
    try:
        appliance.write_config(bloated.replace(ENDPOINT, "endpoint: ${VD_TEST_ECHO_ENDPOINT}"))
        appliance.reload()
        before = appliance.wait_active()
        failures.append(fail_a_session(appliance))
        first = appliance.wait_active(other_than_pid=before["MainPID"])
        appliance.wait_state("idle", timeout=60)
        appliance.write_config(literal(bloated, appliance.stub.url))
        appliance.reload()
        appliance.wait_active()
        failures.append(fail_a_session(appliance))
        appliance.wait_journal("planned restart deferred", cursor, 60)
        second = appliance.props()
    finally:
        appliance.write_config(appliance.original_config)
    # back to the suite's configuration (the limit at 300 MB: the deferred restart finds nothing to do)
    appliance.reload()
    appliance.wait_active()
    return Restarts(before=before, first=first, second=second, journal=appliance.journal(cursor), failures=failures)


def test_a_failed_session_then_idle_above_the_memory_limit_exits_75_and_systemd_restarts_it_as_a_success(
        restarts: Restarts) -> None:
    print(f"\nfailures shown: {restarts.failures}")
    assert restarts.failures[0] == "failed: token-endpoint", restarts.failures
    journal = restarts.journal
    assert "restarting to return memory" in journal and "stopping signal=memory limit" in journal
    # systemd 252 logs a SuccessExitStatus= exit as a success; Restart=on-failure restarts a success only for an
    # exit status in RestartForceExitStatus= (75): the restart scheduled after it shows the status was 75.
    deactivated = journal.index("voice-device.service: Deactivated successfully.",
                                journal.index("restarting to return memory"))
    assert "voice-device.service: Scheduled restart job" in journal[deactivated:], journal
    assert "start-limit" not in journal and "Failed with result" not in journal
    first = restarts.first
    assert first["Result"] == "success" and first["ActiveState"] == "active"
    assert int(first["NRestarts"]) == int(restarts.before["NRestarts"]) + 1
    assert first["MainPID"] != restarts.before["MainPID"]


def test_a_second_planned_restart_soon_after_is_deferred_not_done(restarts: Restarts) -> None:
    assert restarts.failures[1].startswith("failed: "), restarts.failures
    line = next(x for x in restarts.journal.splitlines() if "planned restart deferred" in x)
    print(f"\n{line}")
    assert (restarts.second["MainPID"], restarts.second["NRestarts"]) == (restarts.first["MainPID"],
                                                                          restarts.first["NRestarts"])
    assert restarts.journal.count("restarting to return memory") == 1


def test_systemd_counts_exit_75_restarts_against_the_start_limit(appliance: Appliance) -> None:
    """Why the daemon spaces its planned restarts: the unit's own exit-75 settings, a burst of 3."""
    unit = "vd-exit75-probe"
    run = ["systemd-run", f"--unit={unit}", "-p", "StartLimitBurst=3", "-p", "StartLimitIntervalSec=300",
           "-p", "Restart=on-failure", "-p", "RestartSec=200ms", "-p", "SuccessExitStatus=75",
           "-p", "RestartForceExitStatus=75", "/bin/sh", "-c", "exit 75"]
    try:
        appliance.machine.run(run, timeout=60).check()
        props = wait_for(lambda: (p := appliance.sh(f"systemctl show {unit} -p Result -p NRestarts -p ActiveState"))
                         and "Result=start-limit-hit" in p and p, 60, "the probe to hit the start limit")
        print(f"\n{' '.join(props.split())}")
        assert "NRestarts=3" in props  # three starts allowed; the third restart (a fourth start) was refused
    finally:
        appliance.sh(f"systemctl reset-failed {unit} 2>/dev/null || true; systemctl stop {unit} 2>/dev/null || true")


def test_the_journal_holds_no_secret(appliance: Appliance, restarts: Restarts) -> None:
    assert appliance.token_requests is not None
    sent = [json.loads(line) for line in appliance.token_requests.read_text().splitlines()]
    credential = appliance.secrets["VOICE_DEVICE_CREDENTIAL"]
    assert any(r["path"] == "/echo-500" and credential in str(r["headers"]) for r in sent), \
        "the endpoint never saw the credential: the test would prove nothing"
    everything = appliance.machine.run(["journalctl", "-o", "export", "--no-pager"], timeout=120).check().stdout
    assert "answered HTTP 500" in everything  # the echoing failure was logged: redaction had work to do
    assert "ready state=idle" in everything  # the daemon's own lines are there
    for name, value in appliance.secrets.items():
        assert value not in everything, f"{name} is in the journal"
    assert appliance.secrets["VOICE_DEVICE_TOKEN"].split(".")[2] not in everything
    tokens = re.findall(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}", everything)
    assert tokens == [], "a participant token is in the journal"


def test_check_reads_the_installed_env_file_and_names_the_placeholders_without_it(appliance: Appliance) -> None:
    ok = appliance.machine.run(["voice-device", "check"], timeout=60)
    assert ok.rc == 0 and "config.yaml: valid" in ok.stderr, ok.stderr
    for value in appliance.secrets.values():
        assert value not in ok.stdout + ok.stderr
    bare = appliance.machine.run(["voice-device", "check", "--env", "/dev/null"], timeout=60)
    assert bare.rc == 2, bare.stderr
    line = next(i for i, text in enumerate(appliance.original_config.splitlines(), 1) if "endpoint: ${" in text)
    assert bare.stderr.splitlines()[0].startswith(f"voice-device: config.yaml:{line}: livekit.endpoint: still the "
                                                  "profile's placeholder"), bare.stderr
