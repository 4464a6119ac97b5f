"""WakeWordListener: the hook between the audio engine and the wake-word detector.

A task follows the ring from the moment it starts, through a reader whose chunks reuse one buffer, and feeds
each chunk to the detector with its ring index; each detection is handed to `on_detection` on the loop. The
reader is not live (pump.py): listening for the wake word keeps neither the echo canceller nor every-block
wake-ups running — the detector gets the mic as captured, about every 100 ms, while the device is idle, and the
echo canceller's output while something plays or a session runs. Stopping closes the reader (no CPU while
stopped); starting again resets the detector, since the audio in between was never heard.

The detector is fed in batches of about `BATCH_S` (0.2 s) even while the pump wakes every block (a session, the
speaker playing): the models cost far more called 33 times a second on a cold cache than 5 times a second on
0.2 s each (measured in the running engine here: 1.6 % of a core against 0.6 %); a detection comes up to that
much later, after a phrase that took a second to say. The listener never falls behind the mic for it: a backlog
is read at once.

A `guard` (device/audio/echo_guard.py) follows what the speaker played alongside: a detection it recognises as the
device's own voice is dropped (counted in `guard.vetoed`) instead of handed on, and while the speaker plays it
sets the detector's cutoffs (lower: a user talking over the agent is heard through the echo canceller's
double-talk, and the guard is what keeps the agent's own voice out).
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

BATCH_S = 0.2  # seconds of audio gathered between wake-ups (the reader's chunks are at most 0.2 s)


class Ears(Protocol):
    """What the listener needs of the engine."""

    def now_index(self) -> int: ...

    def reader(self, start_index: int, *, reuse: bool = False, live: bool = True) -> FrameReader: ...


class Guard(Protocol):
    """What the listener needs of a speaker guard."""

    def follow(self) -> None: ...

    def cutoff_scale(self) -> float: ...

    def vetoes(self, detection: Detection) -> bool: ...


class WakeWordListener:
    def __init__(self, ears: Ears, detector: WakeWordDetector, on_detection: Callable[[Detection], None],
                 on_chunk: Callable[[int, np.ndarray], None] | None = None, guard: Guard | None = None) -> None:
        """`on_chunk(first_index, samples)`, if given, sees every chunk after the detector (a meter, a test)."""
        self._ears = ears
        self.detector = detector
        self.guard = guard
        self.batch_s = BATCH_S
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
        detector, guard = self.detector, self.guard
        async for first, chunk in reader:
            if guard is not None:
                guard.follow()  # the far end keeps pace with the mic, so its detections are there when needed
                detector.scale_cutoffs(guard.cutoff_scale())
            found = detector.feed(first, chunk)
            if self._on_chunk is not None:
                self._on_chunk(first, chunk)
            if found is None or (guard is not None and guard.vetoes(found)):
                # let the next chunks gather (one wake-up per batch), but never fall behind the mic
                wait = self.batch_s - reader.available() / detector.rate
                if wait > 0:
                    await asyncio.sleep(wait)
                continue
            self.detections += 1
            log.info("wake word heard model=%s probability=%.3f index=%d phrase_start=%d phrase_end=%d",
                     found.model, found.probability, found.index, found.start_index, found.end_index)
            try:
                self._on_detection(found)
            except Exception:  # a consumer's bug must not stop the device from hearing its name
                log.exception("wake-word handler failed")
