"""The nodes' health probe (the adapter around `NodePool`): GET each node's root every interval, in parallel;
it passes when the node answers 200 "OK" within the timeout, as livekit-server does. A change is logged once."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from voice_device_tokens.nodes import NodePool, Probe, health_url

log = logging.getLogger("voice_device_tokens.health")


async def probe(http: aiohttp.ClientSession, node: str, timeout_s: float) -> Probe:
    try:
        async with http.get(health_url(node), timeout=aiohttp.ClientTimeout(total=timeout_s),
                            allow_redirects=False) as resp:
            ok = resp.status == 200 and (await resp.content.read(64)).strip() == b"OK"
            return Probe.OK if ok else Probe.FAILED
    except TimeoutError:
        return Probe.TIMED_OUT
    except (aiohttp.ClientError, OSError):
        return Probe.FAILED


async def probe_all(pool: NodePool, http: aiohttp.ClientSession, timeout_s: float) -> None:
    results = await asyncio.gather(*(probe(http, node, timeout_s) for node in pool.nodes))
    for node, result in zip(pool.nodes, results, strict=True):
        if pool.mark(node, result):
            if result is Probe.OK:
                log.info("node %s is healthy", node)
            else:
                log.warning("node %s failed its health probe (%s): no tokens name it until it answers again", node,
                            result.value)


async def watch(pool: NodePool, http: aiohttp.ClientSession, interval_s: float) -> None:
    """Probe for ever (cancel to stop); the timeout is the interval, so one slow node never delays the next round."""
    while True:
        await asyncio.sleep(interval_s)
        await probe_all(pool, http, interval_s)
