"""The token bucket and the node rotation, on their own (pure)."""

from __future__ import annotations

from voice_device_tokens.config import Bucket
from voice_device_tokens.nodes import NodePool, Probe, health_url
from voice_device_tokens.ratelimit import Limiter


def test_a_bucket_allows_its_burst_then_one_per_interval_and_says_how_long_to_wait() -> None:
    now = [0.0]
    limiter = Limiter(Bucket(burst=3, per_minute=6), lambda: now[0])
    assert [limiter.take("a") for _ in range(4)] == [0, 0, 0, 10]
    assert limiter.take("b") == 0  # per key
    now[0] = 5.0
    assert limiter.wait_s("a") == 5 and limiter.take("a") == 5
    now[0] = 10.0
    assert limiter.take("a") == 0 and limiter.take("a") == 10
    now[0] = 1000.0
    assert [limiter.take("a") for _ in range(4)] == [0, 0, 0, 10]  # refilled to its burst, no further


def test_nodes_are_handed_out_in_turn_among_the_healthy_only() -> None:
    pool = NodePool(("wss://a", "wss://b", "wss://c"))
    assert pool.choose() is None  # nothing is healthy before its first probe
    for node in pool.nodes:
        pool.mark(node, Probe.OK)
    assert [pool.choose() for _ in range(4)] == ["wss://a", "wss://b", "wss://c", "wss://a"]
    assert pool.mark("wss://b", Probe.FAILED) and not pool.mark("wss://b", Probe.FAILED)
    assert [pool.choose() for _ in range(3)] == ["wss://c", "wss://a", "wss://c"]


def test_a_refusing_node_is_out_at_once_but_a_slow_one_only_at_its_second_timeout_in_a_row() -> None:
    pool = NodePool(("wss://a",))
    assert not pool.mark("wss://a", Probe.TIMED_OUT) and pool.healthy() == []  # never seen alive: stays out
    pool.mark("wss://a", Probe.OK)
    assert not pool.mark("wss://a", Probe.TIMED_OUT) and pool.healthy() == ["wss://a"]
    assert not pool.mark("wss://a", Probe.OK) and not pool.mark("wss://a", Probe.TIMED_OUT)  # the count restarts
    assert pool.mark("wss://a", Probe.TIMED_OUT) and pool.healthy() == []
    pool.mark("wss://a", Probe.OK)
    assert pool.mark("wss://a", Probe.FAILED) and pool.choose() is None


def test_the_probe_asks_the_nodes_http_side() -> None:
    assert health_url("wss://lk.example.com/some/path") == "https://lk.example.com/"
    assert health_url("ws://10.0.0.1:7880") == "http://10.0.0.1:7880/"
