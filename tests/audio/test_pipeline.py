"""Capture callback → pump → readers, driven by hand (no sound card): pre-roll, contiguity, overruns, and a
callback that allocates nothing."""

from __future__ import annotations

import asyncio
import tracemalloc

import numpy as np
import pytest

from device.audio.capture import PA_INPUT_OVERFLOW, Capture
from device.audio.processing import FrameProcessor
from device.audio.pump import Pump
from device.audio.reader import FrameReader
from device.audio.ring import Ring

RATE = 16000
BLOCK = RATE // 50  # 20 ms
TIME_INFO = {"current_time": 100.0, "input_buffer_adc_time": 99.98, "output_buffer_dac_time": 0.0}


def block_bytes(k: int) -> bytes:
    """Block number k: samples counting up from k * BLOCK, so any index can be checked."""
    return (np.arange(k * BLOCK, (k + 1) * BLOCK) % 30000).astype(np.int16).tobytes()


def expected(first: int, n: int) -> np.ndarray:
    return (np.arange(first, first + n) % 30000).astype(np.int16)


def rig(ring_seconds: float = 1.0) -> tuple[Capture, Pump]:
    passthrough = FrameProcessor(RATE, echo_cancellation=False, noise_suppression=False, high_pass_filter=False,
                                 auto_gain_control=False, frames_per_call=2)
    pump = Pump(RATE, ring_seconds, passthrough, None)
    cap = Capture(RATE, BLOCK, 10, wake=lambda: None)
    pump.attach(cap)
    return cap, pump


def feed(cap: Capture, pump: Pump, first_block: int, blocks: int) -> None:
    for k in range(first_block, first_block + blocks):
        cap.callback(block_bytes(k), BLOCK, TIME_INFO, 0)
        pump.run()


async def collect(reader: FrameReader, samples: int) -> list[tuple[int, np.ndarray]]:
    got: list[tuple[int, np.ndarray]] = []
    total = 0
    while total < samples:
        first, chunk = await asyncio.wait_for(reader.__anext__(), 2)
        got.append((first, chunk))
        total += chunk.shape[0]
    return got


async def test_audio_captured_before_a_mark_is_delivered_after_it_in_order():
    cap, pump = rig()
    feed(cap, pump, 0, 20)  # 400 ms of history
    mark = pump.ring.total - 300 * RATE // 1000  # press: keep the last 300 ms
    reader = FrameReader(pump, mark)
    feed(cap, pump, 20, 5)  # speech keeps coming after the press
    got = await collect(reader, 400 * RATE // 1000)
    assert got[0][0] == mark
    pos = mark
    for first, chunk in got:
        assert first == pos  # contiguous: each chunk starts where the previous ended
        assert chunk.shape[0] % (RATE // 100) == 0
        assert np.array_equal(chunk, expected(first, chunk.shape[0]))
        pos += chunk.shape[0]
    assert reader.dropped == 0


async def test_reader_waits_for_live_audio_then_continues_seamlessly():
    cap, pump = rig()
    feed(cap, pump, 0, 3)
    reader = FrameReader(pump, 0)
    first_batch = await collect(reader, 3 * BLOCK)
    pending = asyncio.ensure_future(reader.__anext__())
    await asyncio.sleep(0.01)
    assert not pending.done()  # nothing new: it waits, it does not spin or return empty chunks
    feed(cap, pump, 3, 1)
    first, chunk = await asyncio.wait_for(pending, 2)
    assert first == sum(c.shape[0] for _, c in first_batch)
    assert np.array_equal(chunk, expected(first, BLOCK))


async def test_a_reader_left_behind_reports_the_gap_in_index_and_dropped():
    cap, pump = rig(ring_seconds=1.0)
    reader = FrameReader(pump, 0)
    feed(cap, pump, 0, 80)  # 1.6 s into a 1 s ring
    first, chunk = await asyncio.wait_for(reader.__anext__(), 2)
    assert first == pump.ring.oldest() > 0
    assert reader.dropped == first
    assert np.array_equal(chunk, expected(first, chunk.shape[0]))


async def test_a_reader_that_reuses_its_buffer_hands_out_the_same_audio_in_one_buffer():
    cap, pump = rig()
    feed(cap, pump, 0, 10)
    plain, reusing = FrameReader(pump, 0), FrameReader(pump, 0, reuse=True)
    first, a = await reusing.__anext__()
    kept = a.copy()
    feed(cap, pump, 10, 10)
    second, b = await reusing.__anext__()
    assert np.shares_memory(a, b)  # no new sample buffer per chunk
    assert (first, second) == (0, kept.shape[0])
    assert np.array_equal(kept, expected(0, kept.shape[0])) and np.array_equal(b, expected(second, b.shape[0]))
    got = await collect(plain, kept.shape[0] + b.shape[0])
    assert np.array_equal(np.concatenate([c for _, c in got]), np.concatenate([kept, b]))


async def test_a_start_older_than_the_ring_begins_at_the_oldest_sample_kept():
    cap, pump = rig(ring_seconds=1.0)
    feed(cap, pump, 0, 80)
    reader = FrameReader(pump, 0)
    first, _ = await asyncio.wait_for(reader.__anext__(), 2)
    assert first == pump.ring.oldest()
    assert reader.dropped == 0


async def test_closing_a_reader_ends_its_iteration():
    _, pump = rig()
    reader = FrameReader(pump, pump.ring.total)
    pending = asyncio.ensure_future(reader.__anext__())
    await asyncio.sleep(0.01)
    reader.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 2)


async def test_readers_end_after_the_last_sample_when_the_engine_stops():
    cap, pump = rig()
    feed(cap, pump, 0, 2)
    reader = FrameReader(pump, 0)
    pending = asyncio.ensure_future(collect(reader, 3 * BLOCK))  # more than there will ever be
    await asyncio.sleep(0.01)
    pump.closed = True
    pump.poke()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 2)
    assert reader.position == 2 * BLOCK  # it got everything captured before the stop


def test_raw_samples_the_pump_never_read_are_counted_as_lost():
    cap, pump = rig()
    for k in range(25):  # 25 blocks into a 10-block raw ring without the pump running
        cap.callback(block_bytes(k), BLOCK, TIME_INFO, 0)
    pump.run()
    assert pump.lost_samples == 15 * BLOCK
    assert pump.ring.total == 10 * BLOCK


def test_input_overflow_flags_are_counted_not_fatal():
    cap, pump = rig()
    cap.callback(block_bytes(0), BLOCK, TIME_INFO, PA_INPUT_OVERFLOW)
    cap.callback(block_bytes(1), BLOCK, TIME_INFO, 0)
    pump.run()
    assert cap.input_overflows == 1
    assert pump.ring.total == 2 * BLOCK


def test_adc_time_is_carried_into_the_monotonic_clock():
    cap, pump = rig()
    feed(cap, pump, 0, 1)
    # PortAudio said the block's first sample was 20 ms before "now": its monotonic stamp is 20 ms before
    # the callback ran, and the last sample 1 block later.
    assert cap.last_capture_monotonic - cap.adc_time(0) == pytest.approx(0.02, abs=1e-6)
    assert pump.capture_time(pump.ring.total - 1) == pytest.approx(cap.adc_time(BLOCK - 1))


@pytest.mark.parametrize("rate,block_ms", [(48000, 20), (48000, 40), (16000, 10)])
def test_the_capture_callback_allocates_nothing_that_grows_with_audio(rate: int, block_ms: int):
    block = rate * block_ms // 1000
    wakes = 0

    def wake() -> None:
        nonlocal wakes
        wakes += 1

    cap = Capture(rate, block, 50, wake)
    data = bytes(block * 2)
    tracemalloc.start()
    try:
        for _ in range(100):  # warm up under tracing: first-call caches, counters past the small-int range
            cap.callback(data, block, TIME_INFO, 0)
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(2000):
            cap.callback(data, block, TIME_INFO, PA_INPUT_OVERFLOW)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A copy of one block would be `block * 2` bytes (≥ 320); what remains is a handful of Python number
    # objects (the counters and the float stamp, ~30 bytes each), the same for any block size.
    assert peak - base < 300
    assert current - base < 300  # and nothing accumulates over 2,000 calls
    assert cap.callbacks == 2100 and cap.input_overflows == 2000 and wakes == 2100


# ---- work on demand: the APM and every-block wake-ups only while something is live ------------------------------


def hpf() -> FrameProcessor:
    """A real APM with only the high-pass filter: it changes every sample of a ramp, deterministically."""
    return FrameProcessor(RATE, echo_cancellation=False, noise_suppression=False, high_pass_filter=True,
                          auto_gain_control=False, frames_per_call=2)


def processing_rig() -> tuple[Capture, Pump]:
    pump = Pump(RATE, 2.0, hpf(), None)
    cap = Capture(RATE, BLOCK, 10, wake=lambda: None)
    pump.attach(cap)
    return cap, pump


def ring_copy(pump: Pump, first: int, n: int) -> np.ndarray:
    out = np.zeros(n, np.int16)
    pump.ring.read(first, out)
    return out


def test_idle_the_ring_holds_the_mic_as_captured_and_the_loop_wakes_every_100_ms():
    cap, pump = processing_rig()
    feed(cap, pump, 0, 10)
    assert pump.raw_since == 0
    assert np.array_equal(ring_copy(pump, 0, 10 * BLOCK), expected(0, 10 * BLOCK))  # no APM ran
    assert cap.wake_every == 5  # 20 ms blocks: a wake-up every 100 ms


def test_a_session_mark_in_the_idle_stretch_is_processed_from_the_mark_at_the_same_indices():
    cap, pump = processing_rig()
    feed(cap, pump, 0, 25)  # 500 ms idle
    mark = pump.ring.total - 300 * RATE // 1000
    reader = FrameReader(pump, mark)  # a session's mic (live)
    feed(cap, pump, 25, 5)  # and it goes on, processed block by block
    reference = hpf()  # the same APM run from the mark over what was captured
    want = expected(mark, pump.ring.total - mark)
    reference.process(want)
    got = ring_copy(pump, mark, pump.ring.total - mark)
    assert np.array_equal(got, want)
    assert np.array_equal(ring_copy(pump, 0, mark), expected(0, mark))  # before the mark: as captured
    assert cap.wake_every == 1 and pump.raw_since is None
    reader.close()
    feed(cap, pump, 30, 1)
    assert cap.wake_every == 5 and pump.raw_since == pump.ring.total - BLOCK  # idle again


class Speaker:
    """The player as the pump sees it: a stream open (a cue or the agent playing) or not, and what it played."""

    def __init__(self) -> None:
        self.stream: object | None = None
        self.played = Ring(RATE)
        self.rate = RATE


async def test_a_speaker_opening_in_the_idle_stretch_leaves_no_mark_half_as_captured_half_processed():
    # Idle, the ring holds the mic as captured; a cue opens the speaker (the APM runs from then on) and closes
    # again; then a session's mark falls before the cue. Its audio must be one APM stream from the mark on: every
    # sample once, in order, processed exactly once, never raw up to the cue and processed after it.
    speaker = Speaker()
    pump = Pump(RATE, 2.0, hpf(), speaker)  # type: ignore[arg-type]
    cap = Capture(RATE, BLOCK, 10, wake=lambda: None)
    pump.attach(cap)
    feed(cap, pump, 0, 25)  # 500 ms idle
    speaker.stream = object()  # the cue starts
    feed(cap, pump, 25, 10)
    speaker.stream = None  # and ends: idle again
    feed(cap, pump, 35, 5)
    assert pump.raw_since == 35 * BLOCK
    mark = 10 * BLOCK  # 300 ms before the cue
    reader = FrameReader(pump, mark)  # a session's mic (live)
    feed(cap, pump, 40, 5)
    got = await collect(reader, pump.ring.total - mark)
    firsts = [first for first, _ in got]
    assert firsts == [mark, *np.cumsum([len(c) for _, c in got])[:-1] + mark]  # contiguous: no gap, no overlap
    audio = np.concatenate([c for _, c in got])
    assert len(audio) == pump.ring.total - mark
    reference = hpf()  # one APM, run once over everything captured, in order
    want = expected(0, pump.ring.total)
    reference.process(want)
    assert np.array_equal(audio, want[mark:])
    reader.close()


def test_a_reader_that_is_not_live_changes_nothing():
    cap, pump = processing_rig()
    feed(cap, pump, 0, 5)
    detector = FrameReader(pump, 0, live=False)
    feed(cap, pump, 5, 5)
    assert cap.wake_every == 5 and pump.raw_since == 0
    assert np.array_equal(ring_copy(pump, 0, 10 * BLOCK), expected(0, 10 * BLOCK))
    detector.close()


def test_the_callback_wakes_the_loop_once_per_wake_every_blocks():
    woken: list[int] = []
    cap = Capture(RATE, BLOCK, 10, wake=lambda: woken.append(cap.callbacks))
    cap.wake_every = 3
    for k in range(7):
        cap.callback(block_bytes(k), BLOCK, TIME_INFO, 0)
    assert woken == [3, 6]


async def test_a_readers_head_is_the_end_of_the_ring_read_or_not():
    # where an unmute takes effect (device/session/uplink/uplink.py): audio below it was captured before
    cap, pump = rig()
    feed(cap, pump, 0, 5)
    reader = FrameReader(pump, 0)
    assert reader.head() == 5 * BLOCK
    await collect(reader, 2 * BLOCK)
    feed(cap, pump, 5, 1)
    assert reader.head() == 6 * BLOCK == reader.position + reader.available()
