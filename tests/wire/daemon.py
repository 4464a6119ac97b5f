"""The real daemon (`voice-device run --simulate`) as a subprocess inside the test namespace, driven over its
control socket.

`launch_daemon()` writes nothing: give it a config file (`daemon_config()` writes one pointed at a stub). It
starts the process with `PULSE_SERVER` set (PulseAudio's socket is a file, so it crosses network namespaces),
waits until the control socket answers, and follows the state messages on a thread so a test can wait for a
state with a timeout. `Daemon.stop()` sends SIGTERM (the daemon ends its session and exits 0).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from device.daemon.client import ClientError, ControlClient
from tests.polling import wait_for
from tests.stubsfu.netns import NetNs
from tests.wire.harness import PYTHON, LineProcess

READY_TIMEOUT_S = 20.0


def daemon_config(path: Path, *, url: str, socket: Path, api_secret: str = "secret",
                  agent_connect_timeout_s: float = 10.0, preroll_ms: int = 500,
                  audio: dict[str, Any] | None = None, session: dict[str, Any] | None = None,
                  **sections: dict[str, Any]) -> Path:
    """A push-to-talk config for the stub: local tokens (devkey), simulated button and RGB LED; `sections` add
    to (or extend) whole sections, e.g. `wake_word={...}`, `daemon={"state_dir": ...}`.

    The echo canceller and noise suppressor are off unless `audio` turns them on: they reshape the test speech
    (and the echo canceller shifts its output by a few ms when the far end starts), so the pre-connect audio
    would no longer be the WAV sample for sample. The APM has its own tests in tests/audio. The pipeline runs at
    the rig's 48 kHz (the default is 16 kHz) so that the agent hears the test WAV sample for sample, with no
    resampler between them; tests/wire/test_demo.py runs the default rate end to end.
    """
    config = {
        "audio": {"sample_rate": 48000, "preroll_ms": preroll_ms, "echo_cancellation": False,
                  "noise_suppression": False, "high_pass_filter": False, **(audio or {})},
        "controls": {"button": {"pin": 17, "hold_s": 10.0}, "leds": {"kind": "rgbled", "pins": [5, 6, 13]}},
        "livekit": {"token_source": "local", "url": url, "api_key": "devkey", "api_secret": api_secret,
                    "agent_name": "e2e-agent"},
        "session": {"mode": "push_to_talk", "agent_connect_timeout_s": agent_connect_timeout_s,
                    "idle_timeout_s": 60, **(session or {})},
        "daemon": {"control_socket": str(socket), "watchdog": False},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)  # it holds a secret: the daemon warns about a world-readable one
    return path


@dataclass
class Daemon:
    process: LineProcess
    socket: Path
    messages: list[dict[str, Any]] = field(default_factory=list)  # snapshot, then every state message
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def follow(self) -> None:
        threading.Thread(target=self._follow, daemon=True, name="daemon-states").start()

    def _follow(self) -> None:
        try:
            with ControlClient(str(self.socket)) as client:
                self._add(client.snapshot())
                for message in client.follow():
                    if message.get("type") == "state":
                        self._add(message)
        except ClientError:
            pass  # the daemon stopped

    def _add(self, message: dict[str, Any]) -> None:
        with self._changed:
            self.messages.append({**message, "seen_monotonic": time.monotonic()})
            self._changed.notify_all()

    def states(self) -> list[str]:
        with self._changed:
            return [str(m.get("state")) for m in self.messages]

    def wait_state(self, state: str, timeout: float, *, after: int = 0,
                   reason: str | None = None) -> dict[str, Any]:
        """The first message with `state` (and `reason`) at index ≥ `after` in `messages`."""
        deadline = time.monotonic() + timeout

        def found() -> dict[str, Any] | None:
            for m in self.messages[after:]:
                if m.get("state") == state and (reason is None or m.get("reason") == reason):
                    return m
            return None

        with self._changed:
            while (hit := found()) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.proc.poll() is not None:
                    raise AssertionError(f"daemon never reached {state!r} within {timeout} s; states "
                                         f"{[m.get('state') for m in self.messages]}; log tail:\n"
                                         f"{self.process.log_tail(25)}")
                self._changed.wait(min(remaining, 0.5))
            return hit

    def mark(self) -> int:
        """Index for `wait_state(after=...)`: only states from now on."""
        with self._changed:
            return len(self.messages)

    def ctl(self, cmd: str, **fields: Any) -> dict[str, Any]:
        with ControlClient(str(self.socket)) as client:
            client.snapshot()
            reply = client.command({"cmd": cmd, **fields})
        assert reply.get("type") == "ok", f"ctl {cmd}: {reply}"
        return reply

    def snapshot(self) -> dict[str, Any]:
        with ControlClient(str(self.socket)) as client:
            return client.snapshot()

    def log(self) -> str:
        return self.process.log_tail(10_000)

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.proc.poll() is None:
            self.process.proc.terminate()
        return self.process.wait(timeout)


def launch_daemon(netns: NetNs, workdir: Path, config: Path, pulse_server: str,
                  extra_env: dict[str, str] | None = None) -> Daemon:
    """`voice-device run --config CONFIG --simulate` inside `netns`; returns once its control socket answers."""
    socket = Path(yaml.safe_load(config.read_text())["daemon"]["control_socket"])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PULSE_SERVER": pulse_server, **(extra_env or {})}
    process = LineProcess(netns.command([PYTHON, "-m", "device", "run", "--config", str(config), "--simulate"]),
                          workdir / f"daemon-{time.monotonic_ns()}.log", env=env)
    daemon = Daemon(process=process, socket=socket)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if process.proc.poll() is not None:
            raise AssertionError(f"the daemon exited (rc={process.proc.returncode}) before it was ready:\n"
                                 f"{process.log_tail(25)}")
        try:
            daemon.snapshot()
            break
        except ClientError:
            if time.monotonic() > deadline:
                process.stop()
                raise AssertionError(f"the daemon's control socket {socket} did not answer within "
                                     f"{READY_TIMEOUT_S} s:\n{process.log_tail(25)}") from None
            time.sleep(0.1)
    daemon.follow()
    wait_for(lambda: daemon.messages, 5.0, "the first status snapshot")  # states after this are all seen
    return daemon


