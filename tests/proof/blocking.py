"""`python tests/proof/blocking.py run --config FILE --simulate`: the real daemon, plus a test-only way to block
its event loop from outside — SIGUSR1 makes the loop sleep 1.5 s (a hung callback), while every other thread
(the watchdog's checker, PortAudio's) keeps running. Production code has no such hook; this wrapper adds it."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from device.cli import main
from device.daemon import app

BLOCK_S = 1.5

_run = app.App.run


async def run_with_block_hook(self: app.App) -> int:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, time.sleep, BLOCK_S)
    return await _run(self)


app.App.run = run_with_block_hook  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
