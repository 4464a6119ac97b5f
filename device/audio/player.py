"""Playback: a jitter buffer for incoming `rtc.AudioFrame`s, played by a PyAudio output callback.

`push()` (loop thread) downmixes to mono, resamples to the output device rate with `rtc.AudioResampler`,
applies the software volume and copies into the play ring. The output callback (PortAudio thread) starts
playing once `jitter_ms` is buffered (or the audio has waited that long, or `end()` says nothing more is
coming), plays silence and counts an underrun when the buffer runs dry mid-stream, and copies every block it
actually hands to the device — silence included — into the `played` ring, which the pump feeds to the echo
canceller's reverse stream. `flush()` drops everything not yet played (barge-in).

The output stream exists only while there is something to play: `on_demand` asks the engine to open it once
the jitter target is buffered or `end()` is called (the engine's supervisor also opens it within 250 ms for
anything left waiting), and the engine closes it after a few seconds of idle callbacks (`idle_blocks`). An always-open
output stream costs as much CPU as the whole capture path (measured: 2.5 % of a core at 20 ms blocks).

Volume is applied when audio is pushed: a change reaches the speaker after what is already buffered
(normally the jitter target).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from device.audio.devices import PaStream
from device.audio.ring import Overrun, Ring

if TYPE_CHECKING:
    from livekit import rtc

log = logging.getLogger("device.audio.player")

PA_CONTINUE = 0


class Player:
    def __init__(self, rate: int, jitter_ms: int, volume: float, capacity_s: float = 30.0) -> None:
        self.rate = rate  # output device rate (the pipeline rate until a device says otherwise)
        self.jitter_ms = jitter_ms
        self._volume = min(1.0, max(0.0, float(volume)))
        self._apply_volume: Callable[[float], None] | None = None  # set: the volume is a mixer's, not scaled here
        self.on_volume: Callable[[float], None] | None = None  # told every volume set (the daemon remembers it)
        self._capacity_s = capacity_s
        self.underruns = 0
        self.underrun_samples = 0
        self.overruns = 0  # audio pushed so far ahead that it overwrote unplayed audio
        self.samples_played = 0  # non-silent-by-intent samples handed to the device
        self.stream: PaStream = None
        self.on_demand: Callable[[], None] | None = None  # called when audio is pushed and no stream is open
        self.idle_blocks = 0  # consecutive callbacks with nothing to play (the engine closes an idle stream)
        self.last_callback_monotonic = 0.0
        self._resamplers: dict[int, rtc.AudioResampler] = {}
        self._configure(rate, block=rate // 50)

    def _configure(self, rate: int, block: int) -> None:
        self.rate = rate
        self.block = block
        self._ring = Ring(int(self._capacity_s * rate))
        self.played = Ring(rate)  # one second of what the device actually played, for the echo canceller
        self._pos = 0  # next ring index to play (owned by the callback)
        self._flush_to = 0  # set by flush() on the loop, applied by the callback
        self._end_at = -1  # ring index where the pushed stream ends (no underrun counted there)
        self._playing = False
        self._waited = 0
        self._target = rate * self.jitter_ms // 1000
        self._out = np.zeros(block, dtype=np.int16)
        self._resamplers = {}
        self._filling = False
        self._last_cb = 0.0

    def attach(self, rate: int, block: int) -> None:
        """An output stream opened at `rate` with `block` samples per callback; a new rate drops the buffer."""
        if rate != self.rate or block != self.block:
            self._configure(rate, block)
        self._waited = 0  # time spent with no stream open does not count towards the jitter wait
        # A fresh stream first fills the device buffer with callbacks back to back; audio taken then would drain
        # the jitter buffer faster than real time and underrun. Until PortAudio paces the callbacks, play silence.
        self._filling = True
        self._last_cb = 0.0

    # ---- loop side ----------------------------------------------------------------------------------------

    @property
    def volume(self) -> float:
        return self._volume

    @volume.setter
    def volume(self, value: float) -> None:
        self._volume = min(1.0, max(0.0, float(value)))
        if self._apply_volume is not None:
            self._apply_volume(self._volume)
        if self.on_volume is not None:
            self.on_volume(self._volume)

    def hand_volume_to(self, level: float, apply: Callable[[float], None]) -> None:
        """From now on the volume is applied elsewhere (an ALSA mixer control, `device/audio/mixer.py`): samples go
        out unscaled, `volume` reads `level` and every change of it calls `apply`."""
        self._volume = min(1.0, max(0.0, float(level)))
        self._apply_volume = apply

    def push(self, frame: rtc.AudioFrame) -> None:
        """Queue an `rtc.AudioFrame` (any rate, any channel count) for playback."""
        samples = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:
            samples = samples.reshape(-1, frame.num_channels).mean(axis=1).astype(np.int16)
        self.push_samples(samples, frame.sample_rate)

    def push_samples(self, samples: np.ndarray, rate: int) -> None:
        """Queue int16 mono samples recorded at `rate`."""
        if rate != self.rate:
            resampler = self._resamplers.get(rate)
            if resampler is None:
                from livekit import rtc

                resampler = self._resamplers[rate] = rtc.AudioResampler(rate, self.rate, num_channels=1)
            out = resampler.push(bytearray(samples.tobytes()))
            if not out:
                return
            samples = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in out])
        if self._volume < 1.0 and self._apply_volume is None:
            samples = (samples.astype(np.float32) * self._volume).astype(np.int16)
        if samples.shape[0]:
            self._ring.write(samples)
            self._end_at = -1
            # Ask for a stream only once the jitter target is buffered: opening takes a while, and a stream
            # opened on the first 10 ms frame would start playing before the rest of the burst arrives.
            if self.stream is None and self.on_demand is not None and self.buffered_samples() >= self._target:
                self.on_demand()

    def end(self) -> None:
        """Nothing more follows for now: play out the tail without waiting for the jitter target, and do not
        count the buffer running dry afterwards as an underrun."""
        for rate, resampler in list(self._resamplers.items()):
            tail = resampler.flush()
            self._resamplers.pop(rate)
            for f in tail:
                self.push_samples(np.frombuffer(f.data, dtype=np.int16), self.rate)
        self._end_at = self._ring.total
        if self.stream is None and self.on_demand is not None and self.buffered_samples():
            self.on_demand()

    def flush(self) -> None:
        """Drop everything not yet played (an interruption); playback restarts with the next push."""
        self._resamplers = {}
        self._flush_to = self._ring.total
        self._end_at = self._ring.total

    def buffered_samples(self) -> int:
        """Samples pushed and not yet played."""
        return max(0, self._ring.total - max(self._pos, self._flush_to))

    def buffered_ms(self) -> float:
        return 1000.0 * self.buffered_samples() / self.rate

    # ---- PortAudio side -------------------------------------------------------------------------------------

    def callback(self, in_data: bytes | None, frame_count: int, time_info: Mapping[str, float], status: int
                 ) -> tuple[bytes, int]:
        """PortAudio's output callback: one block from the jitter buffer, or silence."""
        now = self.last_callback_monotonic = time.monotonic()
        out = self._out
        if self._filling:
            paced = self._last_cb > 0.0 and now - self._last_cb >= self.block / self.rate / 2
            self._last_cb = now
            if not paced:
                out.fill(0)
                self.played.write(out)
                return out.tobytes(), PA_CONTINUE
            self._filling = False
        if frame_count != out.shape[0]:  # PortAudio honours the fixed block size; be safe anyway
            out = np.zeros(frame_count, dtype=np.int16)
        ring = self._ring
        if self._flush_to > self._pos:
            self._pos = self._flush_to
            self._playing = False
            self._waited = 0
        avail = ring.total - self._pos
        if not self._playing and avail > 0:
            ended = 0 <= self._end_at <= ring.total
            if avail >= self._target or self._waited >= self._target or ended:
                self._playing = True
            else:
                self._waited += frame_count
        n = 0
        self.idle_blocks = 0 if (self._playing or avail > 0) else self.idle_blocks + 1
        if self._playing:
            try:
                n = ring.read(self._pos, out)
            except Overrun as e:
                self.overruns += 1
                self._pos = e.oldest
                n = ring.read(self._pos, out)
            self._pos += n
            self.samples_played += n
            if n < frame_count:
                out[n:] = 0
                if self._end_at < 0 or self._pos < self._end_at:
                    self.underruns += 1
                    self.underrun_samples += frame_count - n
                self._playing = False
                self._waited = 0
        else:
            out.fill(0)
        self.played.write(out)
        return out.tobytes(), PA_CONTINUE
