"""AudioEngine: the audio layer's one public object — opens the devices, keeps them open, hands out audio.

It wires the pieces (capture callback → raw ring → pump → processed ring → readers; player → output
callback → played ring → echo canceller) and supervises the devices: a device that is missing at start, stops
delivering, or errors is closed, reported once (log line + `MicLost`), and reopened with capped exponential
backoff until it is back (`MicRestored`). `start()` never raises because a device is missing.

Threads: PortAudio runs both callbacks on its own threads; everything else, including `on_event`, runs on the
asyncio loop that called `start()` — except the blocking PortAudio calls (initialise, probe, open, start, close,
terminate), which run in order on the engine's one PortAudio thread: opening a device can take seconds (ALSA's
dmix forks a helper process on its first open; a slow CPU under load), and the loop must keep serving the
session, the watchdog and the control socket meanwhile. One thread keeps them in order and never overlapping
(PortAudio is not made for concurrent calls), so a close queued before an open is done before it, and the final
terminate comes after any open still under way (it also closes whatever that open returned).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from device.audio.capture import Capture
from device.audio.devices import (
    DeviceInfo,
    DeviceNotFound,
    PaStream,
    PyAudio,
    list_devices,
    open_pyaudio,
    pick_device,
    quiet_stderr,
)
from device.audio.earcons import load_earcons
from device.audio.holders import busy_sentence
from device.audio.loop_waker import LoopWaker
from device.audio.player import Player
from device.audio.processing import FrameProcessor
from device.audio.pump import Pump
from device.audio.reader import FrameReader
from device.audio.stats import AudioStats
from device.config.schema import AudioConfig
from device.core.backoff import Backoff
from device.core.vocabulary import Event, MicLost, MicRestored

log = logging.getLogger("device.audio.engine")

HEALTH_PERIOD_S = 0.25
OUTPUT_IDLE_CLOSE_S = 5.0  # an output stream with nothing to play is closed after this long (CPU)
FIRST_RETRY_S = 0.25
RAW_RING_S = 1.0  # the pump runs every block; a second of slack covers a stalled loop

T = TypeVar("T")


@dataclass(frozen=True)
class _Failure:
    """A device that could not be opened, as found on the PortAudio thread; reported on the loop."""

    detail: str
    first_line: str


class AudioEngine:
    def __init__(
        self,
        config: AudioConfig,
        on_event: Callable[[Event], None] | None = None,
        *,
        device_rate: int | None = None,
    ) -> None:
        """`device_rate` forces the rate the devices are opened at (tests of the resampling path)."""
        if config.block_ms % 10:
            raise ValueError("audio.block_ms must be a multiple of 10")
        self.config = config
        self.sample_rate = config.sample_rate
        self._on_event = on_event
        self._device_rate = device_rate
        self.processor = FrameProcessor(
            self.sample_rate,
            echo_cancellation=config.echo_cancellation,
            noise_suppression=config.noise_suppression,
            high_pass_filter=config.high_pass_filter,
            auto_gain_control=config.auto_gain_control,
            frames_per_call=config.block_ms // 10,  # one SDK call per PortAudio block
        )
        self.player = Player(self.sample_rate, config.jitter_ms, config.volume)
        self.player.on_demand = self._output_wanted
        self.output_idle_close_s = OUTPUT_IDLE_CLOSE_S
        self._next_out = 0.0
        self._out_backoff = self._device_backoff()
        self._pump = Pump(self.sample_rate, config.ring_seconds, self.processor, self.player)
        self._earcons = load_earcons(config.earcons, self.sample_rate)
        self._pa: PyAudio | None = None
        self._capture: Capture | None = None
        self._waker: LoopWaker | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.mic_open = False
        self._mic_reported_lost = False
        self._speaker_reported_lost = False
        self._opened_at = 0.0
        self._retired = {"input_overflows": 0, "callbacks": 0, "short_blocks": 0, "raw_overruns": 0}
        self.input_reopens = 0
        self.output_reopens = 0
        self.input_device: DeviceInfo | None = None
        self.output_device: DeviceInfo | None = None
        self.stream_delay_ms = 0
        self._worker: ThreadPoolExecutor | None = None
        self._opening_output: asyncio.Task[None] | None = None

    # ---- the PortAudio thread -------------------------------------------------------------------------------

    def _portaudio_thread(self) -> ThreadPoolExecutor:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portaudio")
        return self._worker

    async def _off_loop(self, fn: Callable[..., T], *args: object) -> T:
        """Run a blocking PortAudio call on the PortAudio thread, after every call queued before it."""
        return await asyncio.get_running_loop().run_in_executor(self._portaudio_thread(), partial(fn, *args))

    def _close_later(self, stream: PaStream) -> None:
        """Close a stream on the PortAudio thread (in order with the opens); the caller does not wait."""
        if self._worker is None:
            _close_stream(stream)
        else:
            self._worker.submit(_close_stream, stream)

    # ---- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the devices. A device that is missing is logged, reported and retried in the background."""
        loop = asyncio.get_running_loop()
        self._stopping = False
        self._pump.closed = False
        self._waker = LoopWaker(loop, self._pump.run)
        self._pa = await self._off_loop(open_pyaudio)
        await self._open_input()
        await self._check_output_exists()
        if self.player.buffered_samples():
            self._output_wanted()
        self._task = loop.create_task(self._supervise(), name="audio-devices")

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._task, self._opening_output):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._opening_output = None
        self._close_input()
        self._close_output()
        if self._waker is not None:
            self._waker.close()
            self._waker = None
        if self._pa is not None:
            # after any open still under way on the PortAudio thread; terminate closes what it opened too
            await self._off_loop(self._pa.terminate)
            self._pa = None
        if self._worker is not None:
            self._worker.shutdown(wait=False)
            self._worker = None
        self._pump.closed = True
        self._pump.poke()

    # ---- what consumers use ---------------------------------------------------------------------------------

    def now_index(self) -> int:
        """Index (in processed pipeline samples) of the next sample to come out of the pump."""
        return self._pump.ring.total

    def oldest_index(self) -> int:
        return self._pump.ring.oldest()

    def mark(self, preroll_ms: int) -> int:
        """`now_index()` minus `preroll_ms`, clamped to the oldest sample still kept (on a 10 ms boundary). The
        pump first takes what the capture has (idle, the loop wakes only every ~100 ms)."""
        self._pump.run()
        frame = self._pump.frame
        back = (max(0, preroll_ms) * self.sample_rate // 1000) // frame * frame
        return max(self.oldest_index(), self.now_index() - back)

    def reader(self, start_index: int, *, reuse: bool = False, live: bool = True) -> FrameReader:
        """The ring from `start_index` on; `reuse`: chunks share one buffer; `live`: a session's mic, not a
        detector's (see FrameReader)."""
        return FrameReader(self._pump, start_index, reuse=reuse, live=live)

    @property
    def ring_fd(self) -> int:
        """The memfd of the processed ring (audio/shared.py), for a session process to map."""
        return self._pump.ring.fd

    def capture_time(self, index: int) -> float:
        """Estimated `time.monotonic()` at which processed sample `index` reached the ADC."""
        return self._pump.capture_time(index)

    def play_earcon(self, name: str) -> None:
        """Play a cue ("listening" | "stopped" | "error" | "wake" | "conversation_end"); nothing if it is off."""
        sound = self._earcons.get(name)
        if sound is None:
            return
        samples, rate = sound
        self.player.push_samples(samples, rate)
        self.player.end()

    def speech_level_dbfs(self) -> float:
        """Level of the latest processed mic block (dBFS, -100 for silence), for an energy gate."""
        return self._pump.level_dbfs if self.mic_open else -100.0

    @property
    def last_capture_monotonic(self) -> float:
        return self._capture.last_capture_monotonic if self._capture is not None else 0.0

    def stats(self) -> AudioStats:
        cap = self._capture
        retired = self._retired
        ring = self._pump.ring
        return AudioStats(
            overruns=retired["raw_overruns"] + (cap.ring.overruns if cap else 0) + ring.overruns
            + self.player.overruns,
            reader_lost_samples=ring.overrun_samples,
            input_overflows=retired["input_overflows"] + (cap.input_overflows if cap else 0),
            underruns=self.player.underruns,
            underrun_samples=self.player.underrun_samples,
            lost_samples=self._pump.lost_samples,
            frames_captured=self._pump.frames_captured,
            callbacks=retired["callbacks"] + (cap.callbacks if cap else 0),
            short_blocks=retired["short_blocks"] + (cap.short_blocks if cap else 0),
            samples_played=self.player.samples_played,
            input_reopens=self.input_reopens,
            output_reopens=self.output_reopens,
            mic_open=self.mic_open,
            stream_delay_ms=self.stream_delay_ms,
        )

    # ---- device supervision -------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Keep the input open and the output open while it has work: check health every 250 ms, reopen what
        failed with capped backoff, close an idle output."""
        in_backoff = self._device_backoff()
        next_in = 0.0
        while not self._stopping:
            await asyncio.sleep(HEALTH_PERIOD_S)
            now = time.monotonic()
            self._check_health(now)
            if self._capture is None and now >= next_in:
                if in_backoff.failures or self.player.stream is None:
                    # PortAudio lists devices once per initialisation: re-initialise to see a replugged device.
                    await self._reinit_portaudio()
                if await self._open_input():
                    self.input_reopens += 1
                    in_backoff.reset()
                else:
                    next_in = time.monotonic() + (in_backoff.next_delay() or 0.0)
            if self.player.stream is None:
                if self.player.buffered_samples() and now >= self._next_out:
                    self._output_wanted()
            elif (
                not self.player.buffered_samples()
                and self.player.idle_blocks * self.player.block / self.player.rate >= self.output_idle_close_s
            ):
                log.debug("audio output idle; closing it until there is something to play")
                self._close_output()

    def _output_wanted(self) -> None:
        """Audio is waiting to be played and no output stream is open: open one (unless backing off), on the
        PortAudio thread; the audio keeps buffering meanwhile."""
        if self.player.stream is not None or self._pa is None or self._stopping:
            return
        if time.monotonic() < self._next_out:
            return
        if self._opening_output is not None and not self._opening_output.done():
            return
        self._opening_output = asyncio.get_running_loop().create_task(self._open_output_with_backoff(),
                                                                      name="audio-output-open")

    async def _open_output_with_backoff(self) -> None:
        if await self._open_output():
            self._out_backoff.reset()
        else:
            self._next_out = time.monotonic() + (self._out_backoff.next_delay() or 0.0)

    def _device_backoff(self) -> Backoff:
        """A local device is nobody else's load: no jitter, just doubling from FIRST_RETRY_S to the cap."""
        return Backoff(FIRST_RETRY_S, self.config.reopen_backoff_max_s, jitter=False)

    async def _check_output_exists(self) -> None:
        """At start: say once if the configured speaker does not exist (it is opened only to play), and size
        the player for the device's rate now, so audio pushed before the first open is not dropped."""

        def probe() -> int | DeviceNotFound:
            try:
                dev = pick_device(list_devices(self._pa), self.config.output_device, self.config.output_index,
                                  "output")
            except DeviceNotFound as e:
                return e
            return self._device_rate_for(dev, "output")

        rate = await self._off_loop(probe)
        if isinstance(rate, DeviceNotFound):
            self._speaker_reported_lost = True
            log.error("audio output unavailable: %s", rate)
            return
        self.player.attach(rate, rate * self.config.block_ms // 1000)

    def _check_health(self, now: float) -> None:
        stall_s = max(1.0, 10 * self.config.block_ms / 1000)
        cap = self._capture
        if cap is not None:
            last = max(cap.last_capture_monotonic, self._opened_at)
            reason = None
            if not _active(cap.stream):
                reason = "the stream stopped (device gone or PortAudio error)"
            elif now - last > stall_s:
                reason = f"no audio for {now - last:.1f} s"
            if reason:
                log.warning("audio input lost device=%r reason=%s; reopening with backoff", _name(self.input_device),
                            reason)
                self._close_input()
                self._report_mic_lost(f"input device stopped: {reason}")
        stream = self.player.stream
        if stream is not None:
            last = max(self.player.last_callback_monotonic, self._out_opened_at)
            if not _active(stream) or now - last > stall_s:
                log.warning("audio output lost device=%r; reopening with backoff", _name(self.output_device))
                self._close_output()
                self.output_reopens += 1

    async def _reinit_portaudio(self) -> None:
        if self._opening_output is not None and not self._opening_output.done():
            await asyncio.wait({self._opening_output})  # its stream belongs to the instance about to go
        self._close_output()

        def renew() -> None:  # on the PortAudio thread: every call queued after it sees the new instance
            if self._pa is not None:
                self._pa.terminate()
            self._pa = open_pyaudio()

        await self._off_loop(renew)

    def _device_rate_for(self, dev: DeviceInfo, direction: str) -> int:
        if self._device_rate:
            return self._device_rate
        import pyaudio

        kwargs = (
            {"input_device": dev.index, "input_channels": self.config.input_channels, "input_format": pyaudio.paInt16}
            if direction == "input"
            else {"output_device": dev.index, "output_channels": 1, "output_format": pyaudio.paInt16}
        )
        for rate in (self.sample_rate, int(dev.default_sample_rate), 48000, 44100, 16000):
            if rate % 100:
                continue
            try:
                with quiet_stderr():
                    if self._portaudio().is_format_supported(rate, **kwargs):
                        return rate
            except ValueError:
                continue
        return self.sample_rate

    def _portaudio(self) -> PyAudio:
        assert self._pa is not None, "start() initialised PortAudio"
        return self._pa

    def _input_stream(self) -> tuple[DeviceInfo, Capture] | _Failure:
        """On the PortAudio thread: find the input, probe its rate, open it (not started)."""
        import pyaudio

        try:
            devices = list_devices(self._pa)
            dev = pick_device(devices, self.config.input_device, self.config.input_index, "input")
        except DeviceNotFound as e:
            busy = busy_sentence(self.config.input_device, "input")
            if busy:  # PortAudio lists a hw: device another process holds with no channels
                return _Failure(f"{self.config.input_device!r} is busy, {busy}",
                                f"audio input {self.config.input_device!r} is busy: {busy}; retrying until it is free")
            return _Failure(str(e), f"audio input unavailable: {e}")
        rate = self._device_rate_for(dev, "input")
        block = rate * self.config.block_ms // 1000
        assert self._waker is not None, "start() made the waker"
        capture = Capture(rate, block, max(4, math.ceil(RAW_RING_S * 1000 / self.config.block_ms)), self._waker.wake,
                          channels=self.config.input_channels, channel=self.config.input_channel)
        try:
            with quiet_stderr():
                capture.stream = self._portaudio().open(
                    format=pyaudio.paInt16, channels=capture.channels, rate=rate, input=True,
                    input_device_index=dev.index,
                    frames_per_buffer=block, stream_callback=capture.callback, start=False,
                )
        except (OSError, ValueError) as e:
            busy = busy_sentence(dev.name, "input")
            if busy:
                return _Failure(f"cannot open {dev.name!r}: {e}, {busy}",
                                f"audio input {dev.name!r} is busy: {busy}; retrying until it is free")
            listed = "; ".join(f"{d.index}: {d.name}" for d in devices if d.max_input_channels > 0)
            return _Failure(f"cannot open {dev.name!r}: {e}",
                            f"audio input {dev.name!r} could not be opened ({e}); input devices present: {listed}. "
                            "Retrying with backoff; check audio.input_device.")
        return dev, capture

    async def _open_input(self) -> bool:
        opened = await self._off_loop(self._input_stream)
        if isinstance(opened, _Failure):
            self._report_mic_lost(opened.detail, first_line=opened.first_line)
            return False
        dev, capture = opened
        # attached before it starts: the pump reads from the first callback on
        self._pump.attach(capture)
        self._capture = capture
        self._opened_at = time.monotonic()
        await self._off_loop(capture.stream.start_stream)
        self.input_device = dev
        self.mic_open = True
        log.info("audio input open device=%r rate=%d channels=%d block_ms=%d pipeline_rate=%d", dev.name,
                 capture.rate, capture.channels, self.config.block_ms, self.sample_rate)
        if self._mic_reported_lost:
            self._mic_reported_lost = False
            log.info("audio input restored device=%r", dev.name)
            self._emit(MicRestored())
        self._update_delay()
        return True

    def _output_stream(self) -> tuple[DeviceInfo, int, int, PaStream]:
        """On the PortAudio thread: find the output, probe its rate, open it (not started)."""
        import pyaudio

        dev = pick_device(list_devices(self._pa), self.config.output_device, self.config.output_index, "output")
        rate = self._device_rate_for(dev, "output")
        block = rate * self.config.block_ms // 1000
        with quiet_stderr():
            stream = self._portaudio().open(
                format=pyaudio.paInt16, channels=1, rate=rate, output=True, output_device_index=dev.index,
                frames_per_buffer=block, stream_callback=self.player.callback, start=False,
            )
        return dev, rate, block, stream

    async def _open_output(self) -> bool:
        try:
            dev, rate, block, stream = await self._off_loop(self._output_stream)
        except (DeviceNotFound, OSError, ValueError) as e:
            if not self._speaker_reported_lost:
                self._speaker_reported_lost = True
                log.error("audio output unavailable: %s; retrying with backoff", e)
            return False
        self.player.attach(rate, block)  # before the stream starts: its callback plays at this rate
        await self._off_loop(stream.start_stream)
        # shown to the health check only once started (it takes a stream that is not active for a lost one)
        self.player.stream = stream
        self._out_opened_at = time.monotonic()
        self.output_device = dev
        if self._speaker_reported_lost:
            self._speaker_reported_lost = False
            log.info("audio output restored device=%r", dev.name)
        log.info("audio output open device=%r rate=%d block_ms=%d", dev.name, rate, self.config.block_ms)
        self._update_delay()
        return True

    _out_opened_at = 0.0

    def _update_delay(self) -> None:
        """Echo path delay hint for the APM: input + output latency as PortAudio reports them, plus a block."""
        cap, out = self._capture, self.player.stream
        if cap is None or out is None:
            return
        try:
            latency = cap.stream.get_input_latency() + out.get_output_latency()
        except OSError:
            return
        self.stream_delay_ms = round(latency * 1000) + self.config.block_ms
        self.processor.set_stream_delay_ms(self.stream_delay_ms)

    def _close_input(self) -> None:
        cap = self._capture
        if cap is None:
            return
        self._capture = None
        self.mic_open = False
        self._pump.run()  # deliver what was captured before the loss
        self._pump.detach()
        self._close_later(cap.stream)
        self._retired["input_overflows"] += cap.input_overflows
        self._retired["callbacks"] += cap.callbacks
        self._retired["short_blocks"] += cap.short_blocks
        self._retired["raw_overruns"] += cap.ring.overruns

    def _close_output(self) -> None:
        stream = self.player.stream
        if stream is None:
            return
        self.player.stream = None
        self._close_later(stream)

    def _report_mic_lost(self, detail: str, first_line: str | None = None) -> None:
        self.mic_open = False
        if self._mic_reported_lost:
            log.debug("audio input still unavailable detail=%s", detail)
            return
        self._mic_reported_lost = True
        if first_line:
            log.error("%s", first_line)
        self._emit(MicLost(detail=detail))

    def _emit(self, event: Event) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a consumer's bug must not stop device supervision
            log.exception("audio on_event handler failed event=%s", type(event).__name__)


def _active(stream: PaStream) -> bool:
    try:
        return bool(stream.is_active())
    except OSError:
        return False


def _close_stream(stream: PaStream) -> None:
    # Close without stop_stream: Pa_CloseStream aborts an active stream (pending buffers dropped, the callback
    # thread cancelled), while Pa_StopStream waits for the device to drain — and a hung device (a suspended sink,
    # a USB speaker gone mid-write) never drains, which blocked the event loop for good.
    with quiet_stderr(), contextlib.suppress(OSError):
        stream.close()


def _name(dev: DeviceInfo | None) -> str:
    return dev.name if dev is not None else "?"
