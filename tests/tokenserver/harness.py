"""What the token server's tests share: its command line run as a program, a `serve` process, a LiveKit node stand-in
that answers the health probe like livekit-server ("OK" at /), and tokens decoded with livekit-api's verifier."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = ROOT / "tokenserver"
API_KEY = "APItokentest"
API_SECRET = "tokenserver-test-secret-0123456789abcdefghij"
LISTENING = re.compile(r"listening on (https?://\S+)")


def program_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(PACKAGE_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "LIVEKIT_API_SECRET": API_SECRET, **extra}


def tokens(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`voice-device-tokens ARGS` (this checkout's, as `python -m voice_device_tokens`)."""
    return subprocess.run([sys.executable, "-m", "voice_device_tokens", *args], capture_output=True, text=True,
                          input=stdin, timeout=60, env=program_env())


def enrol(store: Path, device: str, group: str = "kiosks") -> str:
    """Enrol through the command line; the credential it printed."""
    r = tokens("enrol", "--store", str(store), "--device", device, "--group", group)
    assert r.returncode == 0, r.stderr
    return r.stdout.split("VOICE_DEVICE_CREDENTIAL=", 1)[1].strip()


def write_config(directory: Path, store: Path, nodes: list[str], **overrides: object) -> Path:
    config: dict[str, object] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "store": str(store),
        "livekit": {"nodes": nodes, "api_key": API_KEY, "health_interval_s": 5},
        "groups": {"kiosks": {"agent_name": "kiosk-agent", "ttl_s": 900}, "speakers": {"agent_name": "concierge"}},
    }
    config.update(overrides)
    path = directory / "tokens.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Node:
    """A LiveKit node as the health probe sees it: "OK" at / while up, nothing listening once stopped."""

    url: str = ""
    runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> Node:
        async def ok(request: web.Request) -> web.Response:
            return web.Response(text="OK")

        app = web.Application()
        app.router.add_get("/", ok)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.url = f"ws://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@dataclass
class Served:
    """A `voice-device-tokens serve` process; `url` is where it listens. Its log (stderr) is read as it comes, so
    a busy server never blocks on a full pipe; `stop()` returns all of it."""

    process: asyncio.subprocess.Process
    url: str
    stderr: list[bytes] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(65536):
            self.stderr.append(chunk)

    async def stop(self) -> str:
        if self.process.returncode is None:
            self.process.terminate()
        await asyncio.wait_for(self.process.wait(), 10)
        if self.reader is not None:
            await asyncio.wait_for(self.reader, 10)
        return b"".join(self.stderr).decode()


async def serve(config: Path) -> Served:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voice_device_tokens", "serve", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=program_env())
    assert process.stdout is not None and process.stderr is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    if not (m := LISTENING.match(line)):
        err = (await asyncio.wait_for(process.stderr.read(), 10)).decode()
        raise AssertionError(f"serve did not start: {line!r} {err}")
    return Served(process, m.group(1))


@asynccontextmanager
async def serving(config: Path) -> AsyncIterator[Served]:
    served = await serve(config)
    try:
        yield served
    finally:
        await served.stop()
