"""Fixtures for the wire tests: a network namespace, the stub SFU inside it, and SDK processes inside it.

libwebrtc ignores loopback, so every test runs its processes in a namespace with a veth pair (tests/stubsfu/
netns.py); no traffic leaves it. The real SDK always runs in a subprocess: a native panic aborts a process.
`in_netns(argv)` starts ANY command inside the namespace (the stub, the SDK client, later the daemon).
Without root or `ip netns`, the tests skip with the reason. The helpers live in tests/wire/harness.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.stubsfu.netns import NetNs, NetNsUnavailable
from tests.wire.harness import PYTHON, ClientRun, LineProcess, Stub, launch_stub


@pytest.fixture(scope="module")
def netns() -> Iterator[NetNs]:
    try:
        ns = NetNs.create()
    except NetNsUnavailable as e:
        pytest.skip(str(e))
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
def in_netns(netns: NetNs, tmp_path: Path) -> Iterator[Callable[..., LineProcess]]:
    """Start any command inside the namespace: `in_netns(argv, name="daemon")`; all are stopped afterwards."""
    started: list[LineProcess] = []

    def start(argv: list[str], name: str = "proc", cls: type[LineProcess] = LineProcess) -> LineProcess:
        process = cls(netns.command(argv), tmp_path / f"{name}-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


@pytest.fixture
def start_stub(netns: NetNs, tmp_path: Path) -> Iterator[Callable[..., Stub]]:
    """`start_stub("--agent-delay", "1", ...)`: the stub inside the namespace, ready to take joins."""

    started: list[Stub] = []

    def start(*args: str) -> Stub:
        stub = launch_stub(netns, tmp_path, *args)
        started.append(stub)
        return stub

    yield start
    for stub in started:
        stub.process.stop()


@pytest.fixture
def run_client(in_netns: Callable[..., LineProcess]) -> Callable[..., ClientRun]:
    """`run_client(stub.url, token, "--seconds", "6")`: the SDK client script, started (not awaited)."""

    def start(url: str, token: str, *args: str) -> ClientRun:
        process = in_netns([PYTHON, "-m", "tests.wire.client", "--url", url, "--token", token, *args],
                           name="client", cls=ClientRun)
        assert isinstance(process, ClientRun)
        return process

    return start
