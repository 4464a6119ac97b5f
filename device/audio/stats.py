"""The audio layer's counters, as the daemon's status and the benchmarks read them (`AudioEngine.stats()`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AudioStats:
    """The audio layer's counters since the engine started (a reopened device continues them)."""

    overruns: int = 0  # samples a ring lost because its reader was too slow (raw, processed, playback)
    reader_lost_samples: int = 0
    input_overflows: int = 0  # PortAudio's input overflow flag
    underruns: int = 0  # playback callbacks with nothing to play mid-stream
    underrun_samples: int = 0
    lost_samples: int = 0  # raw samples overwritten before the pump read them
    frames_captured: int = 0  # 10 ms frames through the pipeline
    callbacks: int = 0
    short_blocks: int = 0
    samples_played: int = 0
    input_reopens: int = 0
    output_reopens: int = 0
    mic_open: bool = False
    stream_delay_ms: int = 0
