"""The APM stage: only whole 10 ms frames can reach the SDK (anything else would abort the process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from device.audio.processing import FrameProcessor, FrameSizeError


def all_on(rate: int) -> FrameProcessor:
    return FrameProcessor(rate, echo_cancellation=True, noise_suppression=True, high_pass_filter=True,
                          auto_gain_control=True, frames_per_call=1)


@pytest.mark.parametrize("n", [0, 1, 159, 479, 481, 959, 1000])  # frames_per_call=1 at 48 kHz: 480 per call
def test_a_block_that_is_not_whole_10ms_frames_is_refused_before_the_sdk(n: int):
    with pytest.raises(FrameSizeError):
        all_on(48000).process(np.zeros(n, dtype=np.int16))


def test_wrong_dtype_or_shape_is_refused():
    p = all_on(16000)
    with pytest.raises(FrameSizeError):
        p.process(np.zeros(160, dtype=np.float32))
    with pytest.raises(FrameSizeError):
        p.process(np.zeros((160, 2), dtype=np.int16))
    with pytest.raises(FrameSizeError):
        p.process_reverse(np.zeros(100, dtype=np.int16), 16000)


def test_a_block_that_is_whole_frames_but_not_whole_calls_is_refused():
    p = FrameProcessor(48000, echo_cancellation=False, noise_suppression=True, high_pass_filter=False,
                       auto_gain_control=False, frames_per_call=2)
    with pytest.raises(FrameSizeError):
        p.process(np.zeros(480, dtype=np.int16))  # a call of another size would reset the SDK's state


def test_odd_sizes_do_not_kill_the_process():
    # In a child: if a bad size ever reached the SDK, the child would die of SIGABRT instead of printing ok.
    code = textwrap.dedent("""
        import numpy as np
        from device.audio.processing import FrameProcessor, FrameSizeError
        p = FrameProcessor(48000, echo_cancellation=True, noise_suppression=True, high_pass_filter=True,
                           auto_gain_control=False, frames_per_call=2)
        for n in (1, 240, 479, 480, 481, 719, 1441):
            for call in (p.process, lambda b: p.process_reverse(b, 48000)):
                try:
                    call(np.zeros(n, dtype=np.int16))
                except FrameSizeError:
                    pass
        p.process(np.zeros(960 * 5, dtype=np.int16))  # several calls' worth: split into whole calls
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "ok"


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_every_pipeline_rate_processes_whole_blocks_in_place(rate: int):
    p = FrameProcessor(rate, echo_cancellation=False, noise_suppression=False, high_pass_filter=True,
                       auto_gain_control=False, frames_per_call=2)
    block = np.full(rate // 100 * 6, 8000, dtype=np.int16)  # DC: the high-pass filter removes it
    for _ in range(20):
        b = block.copy()
        p.process(b)
    assert abs(int(b[-100:].mean())) < 800


def test_processing_a_whole_block_per_call_equals_one_10ms_frame_per_call():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(9600) * 3000 + 4000).astype(np.int16)
    one = FrameProcessor(48000, echo_cancellation=False, noise_suppression=True, high_pass_filter=True,
                         auto_gain_control=False, frames_per_call=1)
    four = FrameProcessor(48000, echo_cancellation=False, noise_suppression=True, high_pass_filter=True,
                          auto_gain_control=False, frames_per_call=4)
    a, b = x.copy(), x.copy()
    for i in range(0, 9600, 480):
        one.process(a[i : i + 480])
    for i in range(0, 9600, 1920):
        four.process(b[i : i + 1920])
    assert np.array_equal(a, b)
    assert not np.array_equal(a, x)


def test_all_features_off_passes_audio_through_untouched():
    p = FrameProcessor(48000, echo_cancellation=False, noise_suppression=False, high_pass_filter=False,
                       auto_gain_control=False)
    assert not p.active
    b = np.arange(960, dtype=np.int16)
    p.process(b)
    assert np.array_equal(b, np.arange(960, dtype=np.int16))
    with pytest.raises(FrameSizeError):
        p.process(np.zeros(100, dtype=np.int16))
