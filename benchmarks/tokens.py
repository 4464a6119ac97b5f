"""Benchmark of the fleet's token endpoint (tokenserver/): what a token costs a device, against minting alone.

    python -m benchmarks.tokens [--devices 50] [--requests 1000] [--concurrency 8] [--instances 1] [--json OUT]

Runs real `voice-device-tokens serve` processes (one store, a stand-in node answering the health probe), enrols
`--devices` devices, and sends `--requests` standard token requests from `--concurrency` clients, each request from
a random device; then the same number of refusals (a real device id with a wrong secret, and an unknown id).
Reported: issued requests per second and client-side latency p50 / p99, the refusals' latency, and the peer in the
same run: one `livekit.api.AccessToken(...).to_jwt()` in this process, i.e. what minting alone costs. Rate limits
are raised out of the way (they are what is measured by the tests, not here).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.report import emit
from tests.tokenserver.harness import API_KEY, API_SECRET, Node, enrol, serve, write_config

BODY = {"room_name": "voice-device-bench", "participant_identity": "x",
        "participant_attributes": {"voice_device.protocol": "1.0", "voice_device.mode": "push_to_talk"}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def hammer(urls: list[str], credentials: list[str], requests: int, concurrency: int,
                 expect: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue = list(range(requests))

    async def client(http: aiohttp.ClientSession) -> None:
        while queue:
            i = queue.pop()
            headers = {"Authorization": f"Bearer {random.choice(credentials)}"}
            started = time.perf_counter()
            async with http.post(urls[i % len(urls)] + "/voice-device", json=BODY, headers=headers) as resp:
                await resp.read()
                assert resp.status == expect, resp.status
            latencies.append((time.perf_counter() - started) * 1000)

    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


def mint_ms(count: int = 2000) -> float:
    from livekit import api

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(count):
            (api.AccessToken(API_KEY, API_SECRET).with_identity(f"d{i}")
             .with_grants(api.VideoGrants(room_join=True, room="r")).to_jwt())
    return (time.perf_counter() - started) * 1000 / count


async def run(args: argparse.Namespace) -> dict[str, Any]:
    node = await Node().start()
    with tempfile.TemporaryDirectory(prefix="vd-tokens-bench-") as d:
        store = Path(d) / "devices.sqlite"
        credentials = [enrol(store, f"bench-{i}") for i in range(args.devices)]
        limits = {"per_device": {"burst": 1_000_000, "per_minute": 1_000_000},
                  "failed_auth": {"burst": 1_000_000, "per_minute": 1_000_000}}
        config = write_config(Path(d), store, [node.url], rate_limits=limits)
        served = [await serve(config) for _ in range(args.instances)]
        try:
            urls = [s.url for s in served]
            await hammer(urls, credentials[:5], 50, 2, 201)  # warm-up
            issued, seconds = await hammer(urls, credentials, args.requests, args.concurrency, 201)
            wrong = [c[:-4] + "AAAA" for c in credentials]
            unknown = [f"vdc1.nobody-{i}." + "A" * 43 for i in range(10)]
            refused_wrong, _ = await hammer(urls, wrong, args.requests // 2, args.concurrency, 401)
            refused_unknown, _ = await hammer(urls, unknown, args.requests // 2, args.concurrency, 401)
        finally:
            for s in served:
                await s.stop()
    await node.stop()
    return {
        "devices": args.devices, "requests": args.requests, "concurrency": args.concurrency,
        "instances": args.instances, "issued_per_s": args.requests / seconds,
        "issued_ms_p50": statistics.median(issued), "issued_ms_p99": percentile(issued, 0.99),
        "wrong_secret_ms_p50": statistics.median(refused_wrong),
        "unknown_device_ms_p50": statistics.median(refused_unknown),
        "peer_mint_only_ms": mint_ms(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=50)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tokenserver"))
    r = asyncio.run(run(args))
    emit([
        (f"tokens: issued / s ({r['instances']} instance(s), {r['concurrency']} clients)", f"{r['issued_per_s']:.0f}"),
        ("tokens: issued latency p50 / p99", f"{r['issued_ms_p50']:.1f} / {r['issued_ms_p99']:.1f} ms"),
        ("tokens: refused p50, wrong secret / unknown device",
         f"{r['wrong_secret_ms_p50']:.1f} / {r['unknown_device_ms_p50']:.1f} ms"),
        ("peer: minting alone (livekit-api, in process)", f"{r['peer_mint_only_ms']:.2f} ms"),
    ], r, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
