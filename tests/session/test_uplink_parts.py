"""The uplink's small parts: the bounded pre-connect buffer and the speech energy gate."""

from __future__ import annotations

import numpy as np

from device.audio.levels import rms_dbfs as level_dbfs
from device.session.uplink.uplink import ChunkBuffer


def test_the_buffer_drops_the_oldest_samples_past_its_cap_and_keeps_indices_exact():
    buf = ChunkBuffer(max_samples=250)
    dropped = sum(buf.append(i * 100, np.arange(i * 100, i * 100 + 100, dtype=np.int16)) for i in range(4))
    assert dropped == 150 and buf.samples == 250
    chunks = buf.take()
    assert chunks[0][0] == 150
    np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), np.arange(150, 400))
    assert buf.samples == 0


def test_a_zero_cap_buffer_keeps_nothing():
    buf = ChunkBuffer(0)
    assert buf.append(0, np.ones(160, np.int16)) == 160 and buf.take() == []


def test_level_dbfs_of_full_scale_silence_and_a_quiet_tone():
    assert abs(level_dbfs(np.full(160, 32767, np.int16))) < 0.01
    assert level_dbfs(np.zeros(160, np.int16)) == -120.0
    tone = (np.sin(np.arange(1600) * 2 * np.pi / 16) * 32768 * 10 ** (-40 / 20) * np.sqrt(2)).astype(np.int16)
    assert -41.0 < level_dbfs(tone) < -39.0
