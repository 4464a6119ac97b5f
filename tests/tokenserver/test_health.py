"""The health probe against real HTTP servers on 127.0.0.1: "OK" passes, anything else or a refusal fails, and a
node that never answers times out (which NodePool forgives once)."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from voice_device_tokens.health import probe
from voice_device_tokens.nodes import Probe

from tests.tokenserver.harness import Node


async def answering(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"ws://127.0.0.1:{runner.addresses[0][1]}"


async def test_ok_passes_another_answer_or_a_refusal_fails_and_silence_times_out() -> None:
    never = asyncio.Event()

    async def wrong(request: web.Request) -> web.Response:
        return web.Response(text="maintenance")

    async def silent(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response(text="OK")

    node = await Node().start()
    wrong_runner, wrong_url = await answering(wrong)
    silent_runner, silent_url = await answering(silent)
    async with aiohttp.ClientSession() as http:
        assert await probe(http, node.url, 10.0) is Probe.OK
        assert await probe(http, wrong_url, 10.0) is Probe.FAILED
        assert await probe(http, silent_url, 0.3) is Probe.TIMED_OUT
        await node.stop()
        assert await probe(http, node.url, 10.0) is Probe.FAILED
    never.set()
    await wrong_runner.cleanup()
    await silent_runner.cleanup()
