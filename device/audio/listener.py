"""WakeWordListener: the hook between the audio engine and the wake-word detector.

A task follows the ring from the moment it starts, through a reader whose chunks reuse one buffer, and feeds
each chunk to the detector with its ring index; each detection is handed to `on_detection` on the loop. The
reader is not live (pump.py): listening for the wake word keeps neither the echo canceller nor every-block
wake-ups running — the detector gets the mic as captured, about every 100 ms, while the device is idle, and the
echo canceller's output while something plays or a session runs. Stopping closes the reader (no CPU while
stopped); starting again resets the detector, since the audio in between was never heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np

from device.audio.reader import FrameReader
from device.audio.wakeword import Detection, WakeWordDetector

log = logging.getLogger("device.audio.listener")


class Ears(Protocol):
    """What the listener needs of the engine."""

    def now_index(self) -> int: ...

    def reader(self, start_index: int, *, reuse: bool = False, live: bool = True) -> FrameReader: ...


class WakeWordListener:
    def __init__(self, ears: Ears, detector: WakeWordDetector, on_detection: Callable[[Detection], None],
                 on_chunk: Callable[[int, np.ndarray], None] | None = None) -> None:
        """`on_chunk(first_index, samples)`, if given, sees every chunk after the detector (a meter, a test)."""
        self._ears = ears
        self.detector = detector
        self._on_detection = on_detection
        self._on_chunk = on_chunk
        self._task: asyncio.Task[None] | None = None
        self._reader: FrameReader | None = None
        self._used = False
        self.detections = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        if self._used:
            self.detector.reset()
        self._used = True
        self._reader = self._ears.reader(self._ears.now_index(), reuse=True, live=False)
        self._task = asyncio.get_running_loop().create_task(self._run(self._reader), name="wake-word")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, reader: FrameReader) -> None:
        detector = self.detector
        async for first, chunk in reader:
            found = detector.feed(first, chunk)
            if self._on_chunk is not None:
                self._on_chunk(first, chunk)
            if found is None:
                continue
            self.detections += 1
            log.info("wake word heard model=%s probability=%.3f index=%d phrase_start=%d", found.model,
                     found.probability, found.index, found.start_index)
            try:
                self._on_detection(found)
            except Exception:  # a consumer's bug must not stop the device from hearing its name
                log.exception("wake-word handler failed")
