"""`voice-device audio-test`: the meter, the chirp finder, and both modes on the rig."""

from __future__ import annotations

import re

import numpy as np
import pytest

from device.cli import main
from device.tools.audio_check import chirp, find_delay, meter_line, round_trip_s


def test_meter_spans_silence_to_full_scale():
    assert meter_line(-100.0, width=10) == "[..........]  -99.9 dBFS"
    assert meter_line(-30.0, width=10) == "[#####.....]  -30.0 dBFS"
    assert meter_line(0.0, width=10) == "[##########]    0.0 dBFS"


def test_a_chirp_is_found_at_its_offset_in_a_noisy_recording():
    probe = chirp(16000)
    rng = np.random.default_rng(1)
    recorded = (rng.standard_normal(16000) * 300).astype(np.int16)
    recorded[1234 : 1234 + probe.shape[0]] += probe // 2
    lag, score = find_delay(recorded, probe)
    assert lag == 1234
    assert score > 0.8


def test_round_trip_counts_from_the_push_to_the_arrival_of_the_chunk_holding_the_onset():
    arrivals = [(480, 10.010), (960, 10.020), (1440, 10.030)]  # chunk end index, arrival time
    # Onset at sample 600 arrived with the chunk ending at 960, whose last 360 samples (7.5 ms) came after it.
    assert round_trip_s(600, 10.000, arrivals, 48000) == pytest.approx(0.020 - 0.0075)


@pytest.mark.audio
def test_loopback_reports_the_round_trip_latency_in_ms(audio_rig, capsys):
    assert main(["-q", "audio-test", "--loopback"]) == 0
    found = re.search(r"round-trip latency ([0-9.]+) ms", capsys.readouterr().out)
    assert found, "no latency reported"
    assert 5 < float(found.group(1)) < 500


@pytest.mark.audio
def test_recording_shows_a_meter_then_plays_back(audio_rig, capsys):
    assert main(["-q", "audio-test", "--seconds", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "dBFS" in out and "recorded 0.5 s" in out and "playing it back" in out
