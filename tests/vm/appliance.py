"""The installed voice-device inside the VM, seen the way its owner sees it: systemctl, journalctl, the CLI.

Every wait polls with a bound (tests/polling.py); the bounds are the unit's own (WatchdogSec=,
TimeoutStopSec=, RestartSec=) plus the time a software-emulated guest needs to start Python.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.polling import wait_for
from tests.vm.machine import Machine
from tests.wire.harness import Stub

UNIT = "voice-device.service"
CONFIG = "/etc/voice-device/config.yaml"
TEST_CA = "/etc/vd-test/ca.pem"  # the token endpoint's certificate; tests/vm/guest/vm-test.conf trusts it
START_S = 120.0  # from `systemctl start` to READY=1 in the emulated guest (python + livekit imports), with slack


@dataclass
class BootFacts:
    """What the first boot showed before any test touched the machine."""

    props: dict[str, str]
    system_state: str
    analyze: str
    status: dict[str, Any]

    @classmethod
    def read(cls, machine: Machine) -> BootFacts:
        state = machine.run(["systemctl", "is-system-running", "--wait"], timeout=180).stdout.strip()
        app = Appliance(machine, None, None)  # type: ignore[arg-type]
        app.wait_active()
        return cls(props=app.props(), system_state=state,
                   analyze=machine.run(["systemd-analyze"], timeout=60).stdout, status=app.status())


@dataclass
class Appliance:
    machine: Machine
    stub: Stub
    boot: BootFacts
    secrets: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    original_config: str = ""
    tokens_url: str = ""  # https://HOST_IP:PORT of tests/vm/tokens.py: /ok, /echo-500
    token_requests: Path | None = None  # what that endpoint was sent, a JSON line a request

    # ---- systemd ---------------------------------------------------------------------------------------------

    def props(self, *names: str) -> dict[str, str]:
        names = names or ("ActiveState", "SubState", "Type", "MainPID", "NRestarts", "Result", "ExecMainStatus",
                          "ExecMainCode", "StatusText", "WatchdogUSec", "TimeoutStopUSec")
        out = self.machine.run(["systemctl", "show", UNIT, *[f"--property={n}" for n in names]]).check().stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_active(self, timeout: float = START_S, other_than_pid: str | None = None) -> dict[str, str]:
        def up() -> dict[str, str] | None:
            p = self.props()
            running = p["ActiveState"] == "active" and p["SubState"] == "running"
            return p if running and p["MainPID"] not in ("0", other_than_pid) else None

        return wait_for(up, timeout, f"{UNIT} to be active (running)", every=1.0)

    def restart(self, verb: str = "restart") -> dict[str, str]:
        """`systemctl restart` (or `start`) as an operator would. systemd counts every start against the unit's
        StartLimitBurst=5 in 300 s, an operator's too: a quick run of this suite makes six in five minutes (the
        boot, the set-up, the stop test, the watchdog, the exit 75, the `hw:` test). `reset-failed` first clears
        that count, as an operator whose start was refused would; the daemon's own restarts get no such help."""
        self.machine.run(["systemctl", "reset-failed", UNIT]).check()
        self.machine.run(["systemctl", verb, UNIT], timeout=START_S).check()
        return self.wait_active()

    def cursor(self) -> str:
        out = self.machine.run(["journalctl", "-n", "0", "--show-cursor", "--no-pager"]).stdout
        return out.strip().rsplit("-- cursor: ", 1)[-1]

    def journal(self, after: str | None = None, unit: str | None = UNIT) -> str:
        argv = ["journalctl", "--no-pager", "-o", "short-monotonic", "-b"]
        if unit:
            argv += ["-u", unit]
        if after:
            argv += [f"--after-cursor={after}"]
        return self.machine.run(argv, timeout=60).check().stdout

    def wait_journal(self, text: str, after: str, timeout: float, unit: str | None = UNIT) -> str:
        return wait_for(lambda: text in self.journal(after, unit) and self.journal(after, unit), timeout,
                        f"{text!r} in the journal", every=1.0)

    # ---- the daemon ------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """`voice-device status --json` (a Python start in the guest: for the metrics; states: `state()`)."""
        r = self.machine.run(["voice-device", "status", "--json"], timeout=60)
        if r.rc != 0:
            return {"state": None, "error": r.stderr.strip()}
        return json.loads(r.stdout.splitlines()[0])

    def state(self) -> str:
        """The daemon's state as it last told systemd (STATUS=: `idle`, `failed: unreachable`): no Python start."""
        return self.props("StatusText")["StatusText"]

    def wait_state(self, *states: str, timeout: float) -> str:
        """Until the state (the part before any `: reason`) is one of `states`; returns the whole StatusText."""
        return wait_for(lambda: (s := self.state()).split(":")[0] in states and s, timeout,
                        f"the daemon's state to be one of {states}", every=1.0)

    def ctl(self, action: str, attempts: int = 3) -> None:
        """`voice-device ctl ACTION`; asked again when the daemon did not answer in the client's 15 s (an
        emulated CPU under load), never when it refused."""
        for _ in range(attempts - 1):
            r = self.machine.run(["voice-device", "ctl", action], timeout=60)
            if r.rc == 0 or "did not answer" not in r.stderr:
                r.check()
                return
        self.machine.run(["voice-device", "ctl", action], timeout=60).check()

    def write_config(self, text: str) -> None:
        self.machine.write(CONFIG, text, mode="0640")
        self.machine.run(["chown", "root:voice-device", CONFIG]).check()

    def write_env(self) -> None:
        body = "".join(f"{k}={v}\n" for k, v in self.env.items())
        self.machine.write("/etc/voice-device/env", body, mode="0600")

    def reload(self) -> None:
        self.machine.run(["systemctl", "reload", UNIT], timeout=60).check()

    def sh(self, script: str, timeout: float = 60) -> str:
        return self.machine.sh(script, timeout=timeout).stdout

    def pid_uid_and_unit(self, pid: int) -> tuple[int, str]:
        out = self.sh(f"stat -c %u /proc/{pid} && grep -m1 -o '[^/]*[.]service' /proc/{pid}/cgroup || true")
        lines = out.split()
        return int(lines[0]), (lines[1] if len(lines) > 1 else "")

    def elapsed(self, script: str, timeout: float) -> float:
        """Run `script` in the guest, return its wall time as the guest measured it."""
        out = self.sh(f"s=$(date +%s.%N); {script} >/dev/null; e=$(date +%s.%N); echo \"$e - $s\" | "
                      "python3 -c 'import sys; a,b=sys.stdin.read().split(\" - \"); print(float(a)-float(b))'",
                      timeout=timeout)
        return float(out.split()[-1])


def to_guest(appliance: Appliance, path: str, samples: np.ndarray) -> None:
    """Mono int16 samples → a raw stereo file in the guest (both loopback sides run 2 channels)."""
    stereo = np.repeat(samples.astype("<i2"), 2).tobytes()
    appliance.machine.write(path + ".b64", base64.b64encode(stereo).decode())
    appliance.sh(f"base64 -d {path}.b64 > {path} && rm {path}.b64")


def _from_guest(appliance: Appliance, path: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(appliance.sh(f"base64 -w0 {path}", timeout=120)), dtype="<i2")


def from_guest_mono(appliance: Appliance, path: str) -> np.ndarray:
    return _from_guest(appliance, path).astype(np.int16)


def from_guest_stereo(appliance: Appliance, path: str) -> np.ndarray:
    return _from_guest(appliance, path).reshape(-1, 2).astype(np.int16)
