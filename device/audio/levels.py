"""Signal level of int16 audio, one formula for every consumer (the pump's meter, the session's speech gate)."""

from __future__ import annotations

import math

import numpy as np

FULL_SCALE = 32768.0


def rms_dbfs(samples: np.ndarray, floor: float = -120.0) -> float:
    """RMS level in dB relative to full scale; `floor` for silence or an empty block."""
    if samples.shape[0] == 0:
        return floor
    x = samples.astype(np.float32)
    power = float(np.dot(x, x)) / x.shape[0]
    return 10.0 * math.log10(power / (FULL_SCALE * FULL_SCALE)) if power > 0 else floor
