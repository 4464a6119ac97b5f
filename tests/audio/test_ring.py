"""The ring: history then live by monotonic index, continuous counters, overruns counted and never silent."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.audio.ring import Overrun, Ring


def ramp(start: int, n: int) -> np.ndarray:
    return (np.arange(start, start + n) % 30000).astype(np.int16)


def test_reader_gets_history_then_follows_live_writes_contiguously():
    ring = Ring(1000)
    ring.write(ramp(0, 300))
    out = np.zeros(1000, dtype=np.int16)
    n = ring.read(100, out)
    assert n == 200
    assert np.array_equal(out[:n], ramp(100, 200))
    assert ring.read(300, out) == 0  # nothing new yet
    ring.write(ramp(300, 50))
    n = ring.read(300, out)
    assert n == 50
    assert np.array_equal(out[:n], ramp(300, 50))


def test_counter_is_monotonic_across_wraparound():
    ring = Ring(100)
    for i in range(10):
        ring.write(ramp(i * 70, 70))
    assert ring.total == 700
    assert ring.oldest() == 600
    out = np.zeros(100, dtype=np.int16)
    assert ring.read(600, out) == 100
    assert np.array_equal(out, ramp(600, 100))


def test_reading_overwritten_samples_raises_and_counts_the_loss():
    ring = Ring(100)
    ring.write(ramp(0, 250))
    out = np.zeros(10, dtype=np.int16)
    with pytest.raises(Overrun) as e:
        ring.read(120, out)
    assert e.value.oldest == 150
    assert e.value.lost == 30
    assert ring.overruns == 1
    assert ring.overrun_samples == 30
    assert ring.read(e.value.oldest, out) == 10  # resuming where it says works


def test_write_longer_than_capacity_keeps_the_newest_samples():
    ring = Ring(100)
    ring.write(ramp(0, 250))
    out = np.zeros(100, dtype=np.int16)
    assert ring.read(150, out) == 100
    assert np.array_equal(out, ramp(150, 100))


def test_a_read_from_the_future_is_a_caller_bug():
    ring = Ring(10)
    with pytest.raises(ValueError):
        ring.read(1, np.zeros(1, dtype=np.int16))


def test_a_copy_torn_by_the_writer_is_reported_as_an_overrun():
    ring = Ring(100)
    ring.write(ramp(0, 100))
    ring._reserved = ring.total + 50  # the writer has announced a 50-sample write over indices 0..49
    with pytest.raises(Overrun) as e:
        ring.read(0, np.zeros(100, dtype=np.int16))
    assert e.value.oldest == 50
    assert ring.overruns == 1


@given(st.lists(st.integers(min_value=1, max_value=170), min_size=1, max_size=40), st.integers(1, 64))
def test_any_write_pattern_reads_back_exactly_what_is_kept(sizes: list[int], chunk: int):
    ring = Ring(128)
    written = 0
    for n in sizes:
        ring.write(ramp(written, n))
        written += n
    assert ring.total == written
    pos = ring.oldest()
    out = np.zeros(chunk, dtype=np.int16)
    while pos < written:
        n = ring.read(pos, out)
        assert np.array_equal(out[:n], ramp(pos, n))
        pos += n
    assert ring.overruns == 0
