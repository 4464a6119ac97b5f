"""The agent's voice on its way to the player: the silence between its replies is not played.

An `rtc.AudioStream` yields a frame every `STREAM_FRAME_MS` whether or not the agent says anything: WebRTC's
jitter buffer plays out silence (exact zeros, measured) while the agent listens. Pushing those frames kept the
speaker stream open, the echo canceller's far end fed and — for a session process — a message a frame going to
the daemon all session long: about a tenth of an active session's CPU, for silence.

`VoiceGate` passes frames from the first one whose peak is above `QUIET_PEAK` and goes on passing everything
(the pauses between words included) until `QUIET_TAIL_S` of quiet; then it says the speech has ended (the
player plays out its tail without counting the dry buffer as an underrun) and drops quiet frames until the
agent speaks again. `QUIET_PEAK` is −66 dBFS: nothing a device speaker makes audible, and far below any voice.

The stream's frames are `STREAM_FRAME_MS` long (the SDK batches them natively): one FFI event and one push per
40 ms instead of per 10 ms; the player's jitter buffer (60 ms by default) already waits longer than that.
"""

from __future__ import annotations

import numpy as np

QUIET_PEAK = 16  # int16: a frame whose every sample is within ±16 is silence
QUIET_TAIL_S = 0.5
STREAM_FRAME_MS = 40


class VoiceGate:
    def __init__(self) -> None:
        self.speaking = False
        self._quiet_s = 0.0
        self.dropped_frames = 0

    def admit(self, samples: np.ndarray, seconds: float) -> bool:
        """Whether to play this frame (int16 samples lasting `seconds`). After it returns False following a
        True, `ended()` is True once: the caller tells the player."""
        loud = samples.shape[0] > 0 and (int(samples.max()) > QUIET_PEAK or int(samples.min()) < -QUIET_PEAK)
        if loud:
            self.speaking = True
            self._quiet_s = 0.0
            return True
        if self.speaking:
            self._quiet_s += seconds
            if self._quiet_s < QUIET_TAIL_S:
                return True
            self.speaking = False
            self._ended = True
        self.dropped_frames += 1
        return False

    _ended = False

    def ended(self) -> bool:
        """True once after the speech has ended (the first dropped frame after speech)."""
        ended, self._ended = self._ended, False
        return ended
