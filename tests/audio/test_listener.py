"""The listener, the hook between the engine and the detector, on a pump driven by hand (no sound card): it
follows the processed ring from when it starts, reports each detection once, survives a failing handler and a
failing detector (restarted after a back-off), and starts afresh after a stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np
import pytest

from device.audio.capture import Capture
from device.audio.processing import FrameProcessor
from device.audio.pump import Pump
from device.audio.reader import FrameReader
from device.audio.wake.detector import Detection, WakeWordDetector
from device.audio.wake.listener import BATCH_S, WakeWordListener
from tests.audio.corpus import positive_clips, stream

RATE = 48000
BLOCK = RATE * 30 // 1000
TIME_INFO = {"current_time": 100.0, "input_buffer_adc_time": 99.98, "output_buffer_dac_time": 0.0}


class HandDriven:
    """A capture callback and a pump, as the engine wires them; what the listener needs of the engine."""

    def __init__(self) -> None:
        passthrough = FrameProcessor(RATE, echo_cancellation=False, noise_suppression=False, high_pass_filter=False,
                                     auto_gain_control=False, frames_per_call=3)
        self.pump = Pump(RATE, 10.0, passthrough, None)
        self.capture = Capture(RATE, BLOCK, 40, wake=lambda: None)
        self.pump.attach(self.capture)

    def now_index(self) -> int:
        return self.pump.ring.total

    def reader(self, start_index: int, *, reuse: bool = False, live: bool = True) -> FrameReader:
        return FrameReader(self.pump, start_index, reuse=reuse, live=live)

    async def say(self, audio: np.ndarray) -> None:
        """Deliver `audio` block by block, letting the loop run between blocks (as PortAudio paces them)."""
        for i in range(0, audio.shape[0] - BLOCK + 1, BLOCK):
            self.capture.callback(audio[i : i + BLOCK].tobytes(), BLOCK, TIME_INFO, 0)
            self.pump.run()
            await asyncio.sleep(0)


@pytest.fixture
def two_phrases(speech) -> np.ndarray:
    audio, _ = stream(positive_clips(speech, "okay_nabu")[:2])
    return audio


async def test_each_phrase_is_reported_once_and_a_failing_handler_does_not_stop_the_listening(two_phrases):
    ears = HandDriven()
    heard: list[Detection] = []

    def handler(d: Detection) -> None:
        heard.append(d)
        raise RuntimeError("a consumer's bug")

    await ears.say(np.zeros(RATE, dtype=np.int16))  # a second before the listener starts: not listened to
    listener = WakeWordListener(ears, WakeWordDetector(["okay_nabu"], RATE), handler)
    listener.batch_s = 0.0  # this pump runs faster than real time: no batching wait
    listener.start()
    origin = ears.now_index()
    await ears.say(two_phrases)
    await asyncio.sleep(0.05)
    assert [d.model for d in heard] == ["okay_nabu", "okay_nabu"]
    assert all(origin <= d.start_index < d.index <= ears.now_index() for d in heard)
    assert listener.detections == 2 and listener.running
    await listener.stop()
    assert not listener.running


async def test_a_stopped_listener_hears_nothing_and_starts_again_from_now(two_phrases):
    ears = HandDriven()
    heard: list[Detection] = []
    listener = WakeWordListener(ears, WakeWordDetector(["okay_nabu"], RATE), heard.append)
    listener.batch_s = 0.0
    listener.start()
    await listener.stop()
    await ears.say(two_phrases)  # said while stopped (muted)
    assert heard == []
    listener.start()
    again = ears.now_index()
    await ears.say(two_phrases)
    await asyncio.sleep(0.05)
    assert len(heard) == 2 and all(d.start_index >= again for d in heard)
    await listener.stop()


async def test_the_listener_gathers_a_batch_between_wake_ups_but_never_falls_behind(two_phrases):
    ears = HandDriven()
    heard: list[Detection] = []
    listener = WakeWordListener(ears, WakeWordDetector(["okay_nabu"], RATE), heard.append)
    assert listener.batch_s == BATCH_S > 0
    fed: list[int] = []
    listener.detector.feed = lambda first, samples, feed=listener.detector.feed: fed.append(len(samples)) or \
        feed(first, samples)  # type: ignore[method-assign]
    listener.start()
    await ears.say(np.zeros(BLOCK, dtype=np.int16))
    await asyncio.sleep(0.05)
    await ears.say(two_phrases)  # several seconds at once: a backlog, read without waiting
    async with asyncio.timeout(2):
        while len(heard) < 2:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert listener._reader is not None and listener._reader.available() < BATCH_S * RATE  # caught up
    assert max(fed) == RATE * 200 // 1000  # the backlog went in 0.2 s pieces
    await listener.stop()


async def test_listening_for_the_wake_word_leaves_the_device_idle(two_phrases):
    ears = HandDriven()
    listener = WakeWordListener(ears, WakeWordDetector(["okay_nabu"], RATE), lambda d: None)
    listener.start()
    await ears.say(two_phrases[: RATE // 2])
    # no echo canceller, no wake-up every block: the pump stays idle
    assert ears.capture.wake_every > 1 and not ears.pump.live()
    assert ears.pump.raw_since is not None
    await listener.stop()



# ---- a detector that raises -------------------------------------------------------------------------------------


class BackOffWaits:
    """The listener's back-off waits on a fake clock: each is recorded, and returns when the test lets it go."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.waiting = asyncio.Event()
        self._go = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.waiting.set()
        await self._go.wait()
        self._go.clear()

    async def next(self) -> float:
        """Wait for the listener's next back-off wait; its delay."""
        async with asyncio.timeout(5):
            await self.waiting.wait()
        self.waiting.clear()
        return self.delays[-1]

    def release(self) -> None:
        self._go.set()


def failing(detector: WakeWordDetector, errors: list[Exception]) -> WakeWordDetector:
    """`detector`, whose next `len(errors)` feeds raise those errors in turn."""
    feed = detector.feed

    def flaky(first: int, samples: np.ndarray) -> Detection | None:
        if errors:
            raise errors.pop(0)
        return feed(first, samples)

    detector.feed = flaky  # type: ignore[method-assign]
    return detector


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0)


async def test_a_detector_that_raises_is_logged_once_shown_down_and_listened_with_again_after_a_back_off(
        two_phrases, caplog):
    ears = HandDriven()
    heard: list[Detection] = []
    errors: list[Exception] = [RuntimeError("tensor arena corrupt"), RuntimeError("still corrupt")]
    waits = BackOffWaits()
    listener = WakeWordListener(ears, failing(WakeWordDetector(["okay_nabu"], RATE), errors), heard.append,
                                backoff_sleep=waits)
    listener.batch_s = 0.0
    silence = np.zeros(BLOCK * 4, dtype=np.int16)
    with caplog.at_level(logging.INFO, logger="device.audio.wake.listener"):
        listener.start()
        await ears.say(silence)
        assert await waits.next() == 1.0
        assert listener.down == "RuntimeError: tensor arena corrupt" and not listener.listening
        failed = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.getMessage() for r in failed] == [
            "wake word listener failed error=RuntimeError: tensor arena corrupt: not listening for the wake word, "
            "starting again in 1.0 s"]
        assert failed[0].exc_info is not None  # the traceback goes with it

        waits.release()
        await until(lambda: listener.listening)
        await ears.say(silence)
        assert await waits.next() == 2.0  # it failed again at once: the back-off grows
        assert listener.failures == 2
        waits.release()
        await until(lambda: listener.listening)

    again = ears.now_index()
    await ears.say(two_phrases)
    await until(lambda: len(heard) == 2)
    assert all(d.start_index >= again for d in heard)
    assert listener.down is None and listener.running
    await listener.stop()


async def test_after_a_while_of_hearing_without_error_the_back_off_starts_again_from_its_base():
    ears = HandDriven()
    errors: list[Exception] = [ValueError("bad frame")]
    waits = BackOffWaits()
    listener = WakeWordListener(ears, failing(WakeWordDetector(["okay_nabu"], RATE), errors), lambda d: None,
                                backoff_sleep=waits)
    listener.batch_s = 0.0
    listener.healthy_s = 0.5
    listener.start()
    await ears.say(np.zeros(BLOCK * 4, dtype=np.int16))
    assert await waits.next() == 1.0
    waits.release()
    await until(lambda: listener.listening)
    await ears.say(np.zeros(RATE, dtype=np.int16))  # a second heard without an error
    errors.append(ValueError("bad frame"))
    await ears.say(np.zeros(BLOCK * 4, dtype=np.int16))
    assert await waits.next() == 1.0
    await listener.stop()
    assert not listener.running and listener.down is None
