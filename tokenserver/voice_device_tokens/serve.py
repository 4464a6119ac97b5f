"""`serve`: the endpoint running — the store opened, the nodes probed once, HTTP(S) listening, the probe loop in the
background — until SIGTERM or SIGINT. Prints `listening on http(s)://HOST:PORT` on stdout when ready."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import time

import aiohttp
from aiohttp import web

from voice_device_tokens import health
from voice_device_tokens.app import Endpoint, make_app
from voice_device_tokens.config import Config, ConfigError
from voice_device_tokens.nodes import NodePool
from voice_device_tokens.ratelimit import Limiter
from voice_device_tokens.store import Store

log = logging.getLogger("voice_device_tokens.serve")


def _tls(config: Config) -> ssl.SSLContext | None:
    if config.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls.cert, config.tls.key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"tls.cert / tls.key cannot be loaded as a certificate and its key ({e})") from None
    return context


def endpoint(config: Config, store: Store) -> Endpoint:
    clock = time.monotonic
    return Endpoint(config, store, NodePool(config.nodes), Limiter(config.limits.per_device, clock),
                    Limiter(config.limits.failed_auth, clock), clock)


async def serve(config: Config) -> None:
    context = _tls(config)
    if len(config.api_secret.encode()) < 32:
        log.warning("the LiveKit API secret is shorter than 32 bytes: anyone holding one token could guess it; "
                    "use a longer one (livekit-server generate-keys)")
    store = Store(config.store)
    ep = endpoint(config, store)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(make_app(ep), access_log=None, shutdown_timeout=2.0)
    async with aiohttp.ClientSession() as http:
        await health.probe_all(ep.pool, http, config.health_interval_s)
        healthy = len(ep.pool.healthy())
        if healthy:
            log.info("%d of %d LiveKit nodes healthy", healthy, len(config.nodes))
        else:
            log.warning("no LiveKit node answers its health probe yet: devices get 503 until one does")
        await runner.setup()
        try:
            site = web.TCPSite(runner, config.host, config.port, ssl_context=context)
            await site.start()
            host, port = runner.addresses[0][:2]
            shown = f"[{host}]" if ":" in host else host  # an IPv6 address, as a URL writes it
            print(f"listening on {'https' if context else 'http'}://{shown}:{port}", flush=True)
            watcher = asyncio.create_task(health.watch(ep.pool, http, config.health_interval_s))
            await stop.wait()
            watcher.cancel()
        finally:
            await runner.cleanup()
            store.close()
    log.info("stopped")
