"""Fixtures for the cluster suite: one namespace per module holding Redis, `NODES` livekit-server nodes, one test
agent worker per node (the same agent name: the cluster dispatches to either), and the real daemon on the virtual
audio rig, getting its tokens the way a fleet's device does.

Prerequisites are those of tests/livekit plus redis-server; under CI=true a missing one fails the suite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.cluster import Cluster, unavailable_reason
from tests.cluster.endpoint import TokenEndpoint
from tests.cluster.fleet import launch_enrolled
from tests.livekit.conftest import START_TURN_DELAY_S, stack_namespace
from tests.livekit.worker_proc import Worker
from tests.stubsfu.netns import NetNs
from tests.wire.daemon import Daemon

AGENT = "vd-agent"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="module")
def cluster_ns() -> Iterator[NetNs]:
    yield from stack_namespace("vdcl", unavailable_reason())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="module")
def cluster(cluster_ns: NetNs, workdir: Path) -> Iterator[Cluster]:
    c = Cluster.start(cluster_ns, workdir)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def module_workers(cluster: Cluster, workdir: Path) -> Iterator[list[Worker]]:
    """One worker per node, each registered with its own node."""
    workers = [Worker(node, workdir, AGENT, start_turn_delay_s=START_TURN_DELAY_S, tag=f"@{node.name}")
               for node in cluster.nodes]
    for w in workers:
        w.start()
    yield workers
    for w in workers:
        w.stop()


@pytest.fixture
def workers(cluster: Cluster, module_workers: list[Worker]) -> list[Worker]:
    """Every node running, every worker registered with its node as it is now (a test that killed one brings it
    back)."""
    for node in cluster.nodes:
        if not node.alive():
            node.start()
    return [w.ensure_registered() for w in module_workers]


@pytest.fixture(scope="module")
def module_endpoint(cluster: Cluster, workdir: Path) -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(cluster.ns, workdir, cluster.urls).start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def endpoint(module_endpoint: TokenEndpoint) -> TokenEndpoint:
    """The token endpoint, running and answering (a test that stopped or paused it brings it back)."""
    if module_endpoint.process is None or module_endpoint.process.proc.poll() is not None:
        module_endpoint.start()
    module_endpoint.resume()
    return module_endpoint


@pytest.fixture
def start_device(cluster: Cluster, endpoint: TokenEndpoint, audio_rig: Any,
                 tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """`start_device(name, group, **config)` → the real daemon of an enrolled device `name` in `group`, its
    tokens from the endpoint; stopped after the test."""
    started: list[Daemon] = []

    def go(name: str, group: str, **config: Any) -> Daemon:
        daemon = launch_enrolled(cluster.ns, endpoint, tmp_path, audio_rig.pulse_server, name, group, **config)
        started.append(daemon)
        return daemon

    yield go
    for daemon in started:
        daemon.process.stop()
