"""Waking the asyncio loop from an audio thread: one eventfd write, no allocation, coalesced.

`loop.call_soon_threadsafe` allocates a Handle and writes the loop's self-pipe on every call; an eventfd the
loop watches with `add_reader` costs one syscall and nothing else, and a burst of callbacks collapses into one
wake-up because the counter only needs to be non-zero.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


class LoopWaker:
    """Call `wake()` from any thread; `on_wake` runs on the loop thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_wake: Callable[[], None]) -> None:
        self._loop = loop
        self._on_wake = on_wake
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        loop.add_reader(self._fd, self._ready)
        self._closed = False

    def wake(self) -> None:
        # Called from the PortAudio thread: one syscall; errors cannot be raised into PortAudio.
        if self._closed:
            return
        try:  # noqa: SIM105 - contextlib.suppress would allocate a context manager per wake-up
            os.eventfd_write(self._fd, 1)
        except OSError:
            pass

    def _ready(self) -> None:
        try:
            os.eventfd_read(self._fd)
        except BlockingIOError:
            return
        self._on_wake()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
