"""The speaker guard: the device's own voice must never wake it.

The wake-word detector listens to the echo canceller's output, which removes most of what the speaker plays
from the microphone — most, not all: on the virtual rig the agent saying "okay nabu" still scored up to 0.74
through the canceller against a cutoff of 0.85, and a real room (a loud speaker, a moving echo path, a canceller
that has not converged yet after a silence) leaks more. So the same models also listen to what the speaker
actually played (the player's `played` ring, silence and cues included, at the output device's rate), and a
detection on the microphone is dropped when the speaker said that wake word within `window_s` of it: the user
talking over the agent is heard, the agent quoting the wake word is not.

The far end runs with each cutoff scaled by `FAR_END_CUTOFF_SCALE`: the speaker's signal is clean, so a phrase
that its echo makes score high scores higher there; a lower bar on the far end only makes the veto safer (its
cost: a user saying the wake word in the same second as the agent says something close to it is not heard).
It costs CPU only while the speaker plays (the played ring only grows while an output stream is open).

Times: a far-end detection is placed at the moment its audio was handed to the device (the player's last
callback, back by what was written since); a microphone detection at the ADC time of its ring index.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from device.audio.ring import Overrun, Ring
from device.audio.wake.detector import Detection, WakeWordDetector

if TYPE_CHECKING:
    from device.audio.player import Player

log = logging.getLogger("device.audio.wake.speaker_guard")

FAR_END_CUTOFF_SCALE = 0.6
BARGE_IN_CUTOFF_SCALE = 0.75  # the microphone's cutoffs while the speaker plays
WINDOW_S = 1.5
CHUNK_MS = 200  # the far end is fed in pieces of at most this (the detector's largest chunk)
PLAYING_HOLD_S = 0.5  # the speaker counts as playing this long after its last sound
SOUND_LEVEL = 64  # |int16| above which the played audio is sound, not the silence of an idle stream


class SpeakerGuard:
    """Follows the player's played ring with a second detector; `vetoes(detection)` for the microphone's."""

    def __init__(self, player: Player, detector_for: Callable[[int], WakeWordDetector],
                 capture_time: Callable[[int], float], *, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`detector_for(rate)` builds the far end's detector at the output device's rate; `capture_time(index)`
        is the ADC time of a processed ring index (the engine's)."""
        self._player = player
        self._detector_for = detector_for
        self._capture_time = capture_time
        self.window_s = window_s
        self._clock = clock
        self._ring: Ring | None = None
        self._rate = 0
        self._pos = 0
        self._detector: WakeWordDetector | None = None
        self._buf = np.zeros(0, dtype=np.int16)
        self._heard: deque[tuple[str, float]] = deque(maxlen=16)  # (model, when the speaker played it)
        self._sounded = float("-inf")  # when the speaker last played a sound
        self.heard_on_speaker = 0  # far-end detections
        self.vetoed = 0  # microphone detections dropped because the speaker had just said the wake word

    def follow(self) -> None:
        """Feed the far-end detector everything the speaker played since the last call."""
        player = self._player
        ring = player.played
        if ring is not self._ring:  # first call, or the player was re-made for another output rate
            self._attach(ring, player.rate)
        assert self._detector is not None
        step = self._buf.shape[0]
        frame = self._rate // 100
        while (avail := ring.total - self._pos) >= frame:
            n = min(avail - avail % frame, step)
            try:
                got = ring.read(self._pos, self._buf[:n])
            except Overrun as e:  # fell a whole ring behind (a stalled loop): go on from what is still there
                self._pos = e.oldest + (-e.oldest) % frame
                continue
            piece = self._buf[:got]
            if got and int(np.abs(piece).max()) > SOUND_LEVEL:
                self._sounded = self._clock()
            found = self._detector.feed(self._pos, piece)
            self._pos += got
            if found is not None:
                self._record(found, ring)

    @property
    def speaker_playing(self) -> bool:
        return self._clock() - self._sounded < PLAYING_HOLD_S

    def cutoff_scale(self) -> float:
        """The microphone detector's cutoffs while the speaker plays: lower, because a user talking over the agent
        scores less through the echo canceller's double-talk (on the rig, "okay nabu" said over the agent peaked
        at 0.68–0.95 against okay_nabu's 0.85), and the veto, not the cutoff, keeps the agent's voice out."""
        return BARGE_IN_CUTOFF_SCALE if self.speaker_playing else 1.0

    def vetoes(self, detection: Detection) -> bool:
        """Whether this microphone detection is the speaker's own voice (counted and logged when it is)."""
        self.follow()
        at = self._capture_time(detection.index)
        for model, when in self._heard:
            if model == detection.model and abs(at - when) <= self.window_s:
                self.vetoed += 1
                log.info("wake word from the speaker ignored model=%s probability=%.3f speaker_to_mic_s=%.2f",
                         detection.model, detection.probability, at - when)
                return True
        return False

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def _attach(self, ring: Ring, rate: int) -> None:
        if self._detector is None or rate != self._rate:
            self.close()
            self._detector = self._detector_for(rate)
            self._rate = rate
            self._buf = np.zeros(rate * CHUNK_MS // 1000, dtype=np.int16)
        else:
            self._detector.reset()
        self._ring = ring
        frame = rate // 100
        self._pos = ring.total - ring.total % frame  # what played before now is not ours to judge

    def _record(self, found: Detection, ring: Ring) -> None:
        last = self._player.last_callback_monotonic
        when = (last if last > 0.0 else self._clock()) - (ring.total - found.index) / self._rate
        self._heard.append((found.model, when))
        self.heard_on_speaker += 1
        log.info("wake word heard on the speaker model=%s probability=%.3f", found.model, found.probability)
