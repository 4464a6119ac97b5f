"""The processed ring in shared memory: what the daemon writes, another mapping of the memfd reads, by index."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from device.audio.ring import Overrun
from device.audio.shared import RingView, SharedRing


def test_a_view_reads_what_the_ring_wrote_at_the_same_indices_across_the_wrap() -> None:
    ring = SharedRing(1000)
    view = RingView(os.dup(ring.fd))
    data = np.arange(2500, dtype=np.int16)
    for i in range(0, 2500, 300):
        ring.write(data[i : i + 300])
    assert view.capacity == 1000
    assert np.array_equal(view.read(1500, 2500), data[1500:2500])  # the whole ring, wrapped
    assert np.array_equal(view.read(2100, 2400), data[2100:2400])


def test_samples_the_writer_overwrote_are_an_overrun_not_torn_audio() -> None:
    ring = SharedRing(1000)
    view = RingView(os.dup(ring.fd))
    ring.write(np.ones(1000, np.int16))
    end = ring.total
    ring.write(np.full(400, 2, np.int16))  # the writer has lapped samples 0..400 since `end` was announced
    with pytest.raises(Overrun) as e:
        view.read(0, end)
    assert e.value.oldest == 400
    with pytest.raises(Overrun):  # older than a whole ring before the announced end
        view.read(0, 1200)


def test_another_process_reads_the_ring_through_the_inherited_memfd() -> None:
    ring = SharedRing(16000)
    ring.write((np.arange(16000) % 1000).astype(np.int16))
    code = ("import sys; from device.audio.shared import RingView; v = RingView(int(sys.argv[1])); "
            "print(int(v.read(15000, 16000).astype('int64').sum()))")
    out = subprocess.run([sys.executable, "-c", code, str(ring.fd)], pass_fds=(ring.fd,), capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert int(out.stdout) == int((np.arange(15000, 16000) % 1000).sum())


def test_a_ring_that_is_gone_closes_its_memfd() -> None:
    import gc

    ring = SharedRing(160)
    fd = ring.fd
    os.fstat(fd)
    del ring
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)
