"""WakeWordListener: the hook between the audio engine and the wake-word detector.

A task follows the ring from the moment it starts, through a reader whose chunks reuse one buffer, and feeds
each chunk to the detector with its ring index; each detection is handed to `on_detection` on the loop. The
reader is not live (audio/pump.py): listening for the wake word keeps neither the echo canceller nor every-block
wake-ups running — the detector gets the mic as captured, about every 100 ms, while the device is idle, and the
echo canceller's output while something plays or a session runs. Stopping closes the reader (no CPU while
stopped); starting again resets the detector, since the audio in between was never heard.

The detector is fed in batches of about `BATCH_S` (0.2 s) even while the pump wakes every block (a session, the
speaker playing): the models cost far more called 33 times a second on a cold cache than 5 times a second on
0.2 s each (measured in the running engine here: 1.6 % of a core against 0.6 %); a detection comes up to that
much later, after a phrase that took a second to say. The listener never falls behind the mic for it: a backlog
is read at once.

A detector that raises does not end the listening in silence: the failure is logged with its traceback, `down`
says why while the listener waits, and it starts again (detector reset, reading from then on) after an exponential
back-off (1 s, doubling, at most a minute), which starts again from its base once `healthy_s` of audio has been
heard without an error.

A `guard` (speaker_guard.py) follows what the speaker played alongside: a detection it recognises as the
device's own voice is dropped (counted in `guard.vetoed`) instead of handed on, and while the speaker plays it
sets the detector's cutoffs (lower: a user talking over the agent is heard through the echo canceller's
double-talk, and the guard is what keeps the agent's own voice out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import numpy as np

from device.audio.reader import FrameReader
from device.audio.wake.detector import Detection, WakeWordDetector
from device.core.backoff import Backoff

log = logging.getLogger("device.audio.wake.listener")

BATCH_S = 0.2  # seconds of audio gathered between wake-ups (the reader's chunks are at most 0.2 s)
RESTART_BASE_S, RESTART_CAP_S = 1.0, 60.0  # back-off after a failure: 1 s, 2 s, 4 s ... at most a minute
HEALTHY_S = 60.0  # audio heard without an error after which the back-off starts again from its base


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
                 on_chunk: Callable[[int, np.ndarray], None] | None = None, guard: Guard | None = None, *,
                 backoff_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """`on_chunk(first_index, samples)`, if given, sees every chunk after the detector (a meter, a test);
        `backoff_sleep` waits out the back-off after a failure (a fake clock in tests)."""
        self._ears = ears
        self.detector = detector
        self.guard = guard
        self.batch_s = BATCH_S
        self.healthy_s = HEALTHY_S
        self.backoff_sleep = backoff_sleep
        self._backoff = Backoff(RESTART_BASE_S, RESTART_CAP_S, jitter=False)  # nothing shared to spare: no jitter
        self._heard_s = 0.0  # audio fed to the detector since the last failure
        self._on_detection = on_detection
        self._on_chunk = on_chunk
        self._task: asyncio.Task[None] | None = None
        self._reader: FrameReader | None = None
        self._used = False
        self.detections = 0
        self.failures = 0  # the detector (or a chunk's consumer) raised: the listener started again
        self.down: str | None = None  # why the listener is not hearing, while it waits to start again

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def listening(self) -> bool:
        """Running, and not waiting to start again after a failure."""
        return self.running and self.down is None

    def start(self) -> None:
        if self.running:
            return
        if self._used:
            self.detector.reset()
        self._used = True
        self._reader = self._ears.reader(self._ears.now_index(), reuse=True, live=False)
        self._task = asyncio.get_running_loop().create_task(self._supervise(self._reader), name="wake-word")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.down = None

    async def _supervise(self, reader: FrameReader | None) -> None:
        """Run until the reader is closed (`stop()`); after a failure, wait out the back-off and start again."""
        while True:
            try:
                if reader is None:  # starting again: the audio in between was never heard
                    self.detector.reset()
                    reader = self._reader = self._ears.reader(self._ears.now_index(), reuse=True, live=False)
                    self.down = None
                    log.info("listening for the wake word again after a failure failures=%d", self.failures)
                await self._run(reader)
                return
            except Exception as e:
                if reader is not None:
                    reader.close()
                reader = self._reader = None
                delay = self._failed(e)
            await self.backoff_sleep(delay)

    def _failed(self, error: Exception) -> float:
        self.failures += 1
        self._heard_s = 0.0
        delay = self._backoff.next_delay() or RESTART_CAP_S  # attempts=0: never None
        self.down = f"{type(error).__name__}: {error}"
        log.error("wake word listener failed error=%s: not listening for the wake word, starting again in %.1f s",
                  self.down, delay, exc_info=error)
        return delay

    async def _run(self, reader: FrameReader) -> None:
        detector, guard = self.detector, self.guard
        async for first, chunk in reader:
            if guard is not None:
                guard.follow()  # the far end keeps pace with the mic, so its detections are there when needed
                detector.scale_cutoffs(guard.cutoff_scale())
            found = detector.feed(first, chunk)
            self._heard_s += chunk.shape[0] / detector.rate
            if self._backoff.failures and self._heard_s >= self.healthy_s:
                self._backoff.reset()
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
