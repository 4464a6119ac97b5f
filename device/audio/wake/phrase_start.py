"""Where did the wake phrase begin (and end)? The levels of the last few seconds, walked back from the detection.

microWakeWord only says "the phrase just ended" (it fires 0.1–0.4 s, sometimes up to 0.9 s, after the last
syllable). We keep the level (dB) of every 10 ms frame of the 16 kHz audio and, at a detection, walk back over
the quiet after the phrase, through the phrase (pauses between its words are short), to the first stretch of
`gap_s` of quiet: the phrase began after it, and `lead_s` is taken before that for a soft onset. Speech running
straight into the phrase leaves no such gap: the start is then `max_phrase_s` before the detection — early
rather than late, so the phrase is never cut. Where the walk first met the phrase is its end (what a session
that does not send the wake phrase starts from).

"Quiet" is relative: below the phrase's loudest frame by 30 dB, or above the room's floor (the 20th percentile
of the history) by less than 6 dB when the room is that loud — but never within 15 dB of the peak, or a noisy
room would split the phrase. Levels, not the wake-word front end's noise-reduced features: those adapt over
half a second, so a room that goes from digital silence to a noise floor looks like speech to them (seen on
the virtual rig, where the estimate came 0.6 s early).
"""

from __future__ import annotations

import numpy as np

FRAME_S = 0.01
BELOW_PEAK_DB = 30.0
ABOVE_FLOOR_DB = 6.0
NEVER_WITHIN_DB = 15.0
FLOOR_PERCENTILE = 20


class PhraseStart:
    """Keeps the last `history_s` of 10 ms frames as they came (a ring of samples: copying a frame is all `add`
    costs) and measures their levels only when asked, at a detection — a few times a day, not 100 times a
    second."""

    def __init__(self, frame: int, *, max_phrase_s: float = 2.0, gap_s: float = 0.25, lead_s: float = 0.05,
                 history_s: float = 3.0) -> None:
        self._span = int(max_phrase_s / FRAME_S)
        self._gap = int(gap_s / FRAME_S)
        self._lead = int(lead_s / FRAME_S)
        self._frame = frame
        self._audio = np.zeros((max(self._span, int(history_s / FRAME_S)), frame), dtype=np.int16)
        self._frames = 0  # frames added since the start (or the last reset)

    def add(self, frame: np.ndarray) -> None:
        """One 10 ms frame of int16 audio."""
        self._audio[self._frames % self._audio.shape[0]] = frame
        self._frames += 1

    def reset(self) -> None:
        self._frames = 0

    def frames_back(self) -> int:
        """How many frames before the end of the newest one the phrase began (lead included)."""
        return self.extent()[0]

    def _levels(self) -> np.ndarray:
        """The level (dBFS) of every frame held, oldest first."""
        size = self._audio.shape[0]
        order = np.arange(max(0, self._frames - size), self._frames) % size
        audio = self._audio[order].astype(np.float64)
        power = np.einsum("ij,ij->i", audio, audio) / self._frame
        levels: np.ndarray = 10.0 * np.log10(power / (32768.0 * 32768.0) + 1e-10)
        return levels

    def extent(self) -> tuple[int, int]:
        """(frames back to where the phrase began, lead included; frames back to where it ended): the end is
        the first quiet frame after it — the newest frame itself when speech went on after the phrase."""
        span = min(self._span, self._frames)
        if span == 0:
            return 0, 0
        known = self._levels()
        level = known[::-1][:span].tolist()  # newest first
        peak = max(level)
        floor = float(np.percentile(known, FLOOR_PERCENTILE))
        threshold = max(peak - BELOW_PEAK_DB, min(floor + ABOVE_FLOOR_DB, peak - NEVER_WITHIN_DB))
        k = 0
        while k < span and level[k] < threshold:  # the quiet after the phrase, before the model fired
            k += 1
        end = k
        quiet = 0
        onset = span - 1  # no gap: as far back as the bound allows
        while k < span:
            if level[k] >= threshold:
                quiet = 0
            else:
                quiet += 1
                if quiet == self._gap:
                    onset = k - self._gap  # the loud frame just after the gap (newest-first order)
                    break
            k += 1
        return min(span, onset + 1 + self._lead), end
