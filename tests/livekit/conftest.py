"""Fixtures for the real-stack tests: one namespace, one `livekit-server` and one agent worker per module, and
the real daemon (`voice-device run --simulate`) on the virtual audio rig, pointed at that server.

Without the built server (no Go) or the agent's virtualenv these tests skip with the reason; under CI=true that
is a failure instead: CI must prove the real stack on every change.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.livekit.network import Capture, DeviceSide, tag_device_connections, tools_missing
from tests.livekit.server import API_KEY, API_SECRET, Server, unavailable_reason
from tests.livekit.worker_proc import Worker, agent_unavailable_reason
from tests.polling import wait_for
from tests.stubsfu.netns import NetNs, NetNsUnavailable
from tests.wire.daemon import Daemon, daemon_config, launch_daemon

# The test agent answers start_turn this late (a busy agent, a slow network): the device must keep its pre-connect
# stream open until the answer, or the agent — its input off until then — discards the buffer (routing.py).
START_TURN_DELAY_S = 0.5


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.livekit_server)


def require(reason: str | None) -> None:
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the real LiveKit stack cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def stack_namespace(prefix: str, *more_reasons: str | None) -> Iterator[NetNs]:
    """A module's namespace for the real stack (its prerequisites checked first), the device's connections
    tagged so the faults of tests/livekit/network.py hit them only; deleted after."""
    require(unavailable_reason() or agent_unavailable_reason() or tools_missing()
            or next((r for r in more_reasons if r), None))
    try:
        ns = NetNs.create(prefix)
    except NetNsUnavailable as e:
        require(str(e))
        raise
    try:
        tag_device_connections(ns)
        yield ns
    finally:
        ns.delete()


@pytest.fixture(scope="module")
def livekit_ns() -> Iterator[NetNs]:
    yield from stack_namespace("vdlk")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("livekit")


@pytest.fixture(scope="module")
def capture(livekit_ns: NetNs, workdir: Path) -> Iterator[Capture]:
    """Every packet of the module, from before the server starts."""
    cap = Capture(livekit_ns, workdir / "namespace.pcap").start()
    time.sleep(0.5)  # tcpdump opens its socket
    yield cap
    cap.stop()


@pytest.fixture(scope="module")
def server(livekit_ns: NetNs, workdir: Path, capture: Capture) -> Iterator[Server]:
    srv = Server(livekit_ns, workdir).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def module_worker(server: Server, workdir: Path) -> Iterator[Worker]:
    w = Worker(server, workdir, "vd-agent", start_turn_delay_s=START_TURN_DELAY_S).start()
    yield w
    w.stop()


@pytest.fixture
def worker(module_worker: Worker) -> Worker:
    """The push-to-talk agent `vd-agent` (the daemon's configs below dispatch it), registered with the server
    that runs now: started again if a test killed it, waited for if the server was restarted."""
    return module_worker.ensure_registered()


def real_config(server: Server, path: Path, socket: Path, *, agent_name: str = "vd-agent",
                livekit: dict[str, Any] | None = None, **kwargs: Any) -> Path:
    lk = {"url": server.url, "api_key": API_KEY, "api_secret": API_SECRET, "agent_name": agent_name,
          **(livekit or {})}
    return daemon_config(path, url=server.url, socket=socket, api_secret=lk.pop("api_secret"), livekit=lk, **kwargs)


def launch_real_daemon(server: Server, directory: Path, pulse_server: str, **config: Any) -> Daemon:
    stamp = time.monotonic_ns()
    cfg = real_config(server, directory / f"daemon-{stamp}.yaml", directory / f"ctl-{stamp}.sock", **config)
    return launch_daemon(DeviceSide.of(server.ns), directory, cfg, pulse_server)


def room_of(daemon: Daemon, timeout: float = 20.0) -> str:
    """The room the daemon's current session joined (from its log line `session connected room=…`)."""
    found = wait_for(lambda: re.findall(r"session connected room=(\S+)", daemon.log()), timeout,
                     "the daemon to log its room")
    return str(found[-1])


@pytest.fixture
def start_daemon(server: Server, audio_rig: Any, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """`start_daemon(**daemon_config)` → the daemon pointed at the real server; stopped after the test."""
    started: list[Daemon] = []

    def go(**config: Any) -> Daemon:
        daemon = launch_real_daemon(server, tmp_path, audio_rig.pulse_server, **config)
        started.append(daemon)
        return daemon

    yield go
    for daemon in started:
        daemon.process.stop()
