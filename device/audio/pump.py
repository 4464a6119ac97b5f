"""The pump: raw device audio → (resample) → whole 10 ms frames through the APM → the processed ring.

Runs on the asyncio loop thread, once per wake-up of the capture callback, and makes one APM call per block,
not one per 10 ms. Before the microphone block it feeds the echo canceller everything the speaker played since
the last run (the far end must reach the APM before the near end that contains its echo).

Work on demand (`live()`): a live reader (a session's mic) or an open speaker stream needs the echo canceller and
low latency; an idle device needs only the ring (the pre-roll, a wake-word detector). So:
- while nothing is live, the APM does not run: the ring holds the mic as captured (`raw_since` says from which
  index), and the callback wakes the loop every `IDLE_WAKE_MS` (every few blocks) instead of every block;
- when a live reader opens at a mark in that raw stretch, the pump first runs the APM over the ring from the
  mark (rounded back to whole APM calls) in place — the pre-roll is processed when the session starts, at the same
  indices — then processes every block as it comes, waking the loop every block;
- when the speaker opens instead (a cue while idle), there is no mark yet, and a session that starts during the
  cue can mark back before it: the pump runs the APM over the whole raw stretch the ring holds first, so a mark
  before the cue does not get audio as captured up to the cue and processed after it. Either way every sample it
  processes goes through the one APM once, in capture order.
A reader that is not live (`live=False`: a wake-word detector, a recorder) reads whatever the ring holds —
processed while a session runs, as captured otherwise — and changes none of this.

Indices: the processed ring counts pipeline samples since the engine started; a device reopen continues the
count (a gap in time is not a gap in indices). `capture_time(i)` maps a processed index back to the ADC time
of the raw sample it came from.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from typing import TYPE_CHECKING, Protocol

import numpy as np

from device.audio.levels import rms_dbfs
from device.audio.processing import FrameProcessor
from device.audio.ring import Overrun
from device.audio.shared import SharedRing

if TYPE_CHECKING:
    from livekit import rtc

    from device.audio.capture import Capture
    from device.audio.player import Player

log = logging.getLogger("device.audio.pump")

LEVEL_FLOOR_DBFS = -100.0
IDLE_WAKE_MS = 100  # while nothing is live the loop wakes about this often (whole blocks)


class LiveReader(Protocol):
    """What the pump sees of a live reader (reader.py's `FrameReader`): whether it is still open."""

    closed: bool


class Pump:
    def __init__(self, rate: int, ring_seconds: float, processor: FrameProcessor, player: Player | None) -> None:
        self.rate = rate
        self.frame = rate // 100
        # Whole frames only, so every index the ring hands out sits on a 10 ms boundary. In shared memory: a
        # session process reads the mic from it by index (audio/shared.py).
        self.ring = SharedRing(max(1, int(ring_seconds * 100)) * self.frame)
        self.processor = processor
        self.player = player
        self._capture: Capture | None = None
        self._raw_pos = 0
        self._resampler: rtc.AudioResampler | None = None
        self._pending = np.zeros(0, dtype=np.int16)  # resampled samples short of a whole 10 ms frame
        self._work = np.zeros(self.frame * 8, dtype=np.int16)
        self._far_pos = 0
        self._far_work = np.zeros(0, dtype=np.int16)
        self._new_data = asyncio.Event()
        self.closed = False  # the engine stopped: readers end once they have everything
        self.level_dbfs = LEVEL_FLOOR_DBFS
        self.lost_samples = 0  # raw samples overwritten before the pump read them
        self.frames_captured = 0  # 10 ms frames through the pipeline
        self.anchor_index = 0  # processed index whose raw sample's ADC time is anchor_time
        self.anchor_time = 0.0
        self._live_readers: weakref.WeakSet[LiveReader] = weakref.WeakSet()
        self.raw_since: int | None = 0  # the ring holds unprocessed audio from this index on (None: processing)
        self.reprocessed_samples = 0  # ring samples the APM ran over when a live reader came (the pre-roll)

    # ---- attaching a (re)opened device ---------------------------------------------------------------------

    def attach(self, capture: Capture) -> None:
        """Start reading a freshly opened input; a resampler bridges a device rate other than the pipeline's."""
        self._capture = capture
        self._raw_pos = capture.ring.total
        self._pending = np.zeros(0, dtype=np.int16)
        self._resampler = None
        if capture.rate != self.rate:
            from livekit import rtc

            self._resampler = rtc.AudioResampler(capture.rate, self.rate, num_channels=1)
        raw_batch = capture.block * 2
        if self._work.shape[0] < raw_batch:
            self._work = np.zeros(raw_batch, dtype=np.int16)

    def detach(self) -> None:
        self._capture = None
        self._resampler = None

    # ---- one run per wake-up --------------------------------------------------------------------------------

    def run(self) -> None:
        self._update_demand()
        self._feed_far_end()
        cap = self._capture
        if cap is None:
            return
        ring = cap.ring
        if self._raw_pos < ring.oldest():
            self.lost_samples += ring.oldest() - self._raw_pos
            self._raw_pos = ring.oldest()
        produced = 0
        while True:
            avail = ring.total - self._raw_pos
            if avail < cap.block:
                break
            n = min(avail - avail % cap.block, self._work.shape[0] - self._work.shape[0] % cap.block)
            buf = self._work[:n]
            try:
                ring.read(self._raw_pos, buf)
            except Overrun as e:
                self.lost_samples += e.lost
                self._raw_pos = e.oldest + (-e.oldest) % cap.block
                continue
            self._raw_pos += n
            produced += self._process(buf, self._raw_pos - 1, cap)
        if produced:
            self.poke()

    # ---- work on demand ----------------------------------------------------------------------------------

    def live(self) -> bool:
        """Something needs the echo canceller and every block now: a live reader, or a speaker stream open."""
        if any(not r.closed for r in self._live_readers):
            return True
        return self.player is not None and self.player.stream is not None

    def add_live_reader(self, reader: LiveReader, start: int) -> None:
        """A live reader from ring index `start`: catch up with the capture, process the ring from `start` if it
        holds raw audio there, and run live from now on."""
        self.run()  # what the capture has, as it would be without this reader
        self._live_readers.add(reader)
        self._update_demand(start)

    def _update_demand(self, mark: int | None = None) -> None:
        """Switch between idle (raw, woken every ~100 ms) and live (processed, woken every block). Going live, the
        APM first runs over the raw stretch in place, so a session's audio is processed throughout from its mark:
        from a live reader's `mark` (its pre-roll), or all of the stretch when the speaker opened (there is no mark
        yet, and a session that starts during the cue may mark back before it). The cost is one APM pass over what
        the ring holds (about 4 ms per second of audio on the development machine), paid once per switch."""
        live = self.live()
        if live and self.raw_since is not None:
            if self.processor.active:
                self._process_ring_from(self.raw_since if mark is None else mark)
            self.raw_since = None
            self._far_pos = -1  # the far end restarts from what played lately (_feed_far_end)
        elif not live and self.raw_since is None:
            self.raw_since = self.ring.total
        cap = self._capture
        if cap is not None:
            cap.wake_every = 1 if live else max(1, math.ceil(IDLE_WAKE_MS * cap.rate / 1000 / cap.block))

    def _process_ring_from(self, start: int) -> None:
        """Run the APM in place over the ring's raw audio from `start` (rounded back to a whole number of APM calls,
        within what the ring holds) to its end."""
        assert self.raw_since is not None
        call = self.processor.call
        total = self.ring.total
        begin = max(start, self.raw_since, self.ring.oldest())
        calls = math.ceil((total - begin) / call)
        begin = total - calls * call
        while begin < max(self.ring.oldest(), self.raw_since):
            begin += call
        if begin >= total:
            return
        n = total - begin
        if self._work.shape[0] < n:
            self._work = np.zeros(n, dtype=np.int16)
        buf = self._work[:n]
        self.ring.read(begin, buf)
        self.processor.process(buf)
        self.ring.overwrite(begin, buf)
        self.reprocessed_samples += n

    def _process(self, raw: np.ndarray, last_raw_index: int, cap: Capture) -> int:
        if self._resampler is None:
            block = raw
        else:
            out = self._resampler.push(bytearray(raw.tobytes()))
            parts = [self._pending] + [np.frombuffer(f.data, dtype=np.int16) for f in out]
            joined = np.concatenate(parts)
            whole = joined.shape[0] - joined.shape[0] % self.processor.call
            block, self._pending = joined[:whole].copy(), joined[whole:].copy()
            if whole == 0:
                return 0
        if self.raw_since is None:
            self.processor.process(block)
        self.ring.write(block)
        self.frames_captured += block.shape[0] // self.frame
        self.anchor_index = self.ring.total - 1
        self.anchor_time = cap.adc_time(last_raw_index)
        self._measure(block)
        return int(block.shape[0])

    def _measure(self, block: np.ndarray) -> None:
        self.level_dbfs = rms_dbfs(block, LEVEL_FLOOR_DBFS)

    def _feed_far_end(self) -> None:
        """Everything played since the last run goes to the APM's reverse stream, in whole APM calls."""
        player = self.player
        if player is None or not self.processor.echo_cancellation or self.raw_since is not None:
            return
        played = player.played
        frame = self.processor.frames_per_call * (player.rate // 100)  # the APM's fixed call size at that rate
        if frame == 0:
            return
        if self._far_pos < 0:  # processing just started: what played since the loop last woke, not older
            self._far_pos = max(played.oldest(), played.total - 2 * IDLE_WAKE_MS * player.rate // 1000)
        if self._far_pos < played.oldest() or self._far_pos > played.total:
            self._far_pos = played.oldest() + (-played.oldest()) % frame
        avail = played.total - self._far_pos
        n = avail - avail % frame
        if n <= 0:
            return
        if self._far_work.shape[0] < n:
            self._far_work = np.zeros(n, dtype=np.int16)
        buf = self._far_work[:n]
        try:
            played.read(self._far_pos, buf)
        except Overrun as e:
            self._far_pos = e.oldest + (-e.oldest) % frame
            return
        self._far_pos += n
        self.processor.process_reverse(buf, player.rate)

    # ---- for readers ----------------------------------------------------------------------------------------

    def poke(self) -> None:
        """Wake every reader waiting for data (new samples, or a reader was closed)."""
        self._new_data.set()
        self._new_data = asyncio.Event()

    async def wait_new(self) -> None:
        await self._new_data.wait()

    def capture_time(self, index: int) -> float:
        """Monotonic ADC time of processed sample `index` (estimate through the latest anchor)."""
        return self.anchor_time - (self.anchor_index - index) / self.rate
