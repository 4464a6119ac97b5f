"""The wake word in the daemon (a mode with `Mode.wake_word`): the listener on the processed microphone, the
speaker guard beside it, and what a detection tells the device machine.

    wake = WakeService.build(config.wake_word, engine, app.feed)   # models loaded once, at start-up
    wake.start()                                                   # not while muted: mute means mute
    await wake.stop()                                              # on mute; start() again on unmute

A detection becomes `WakeWordHeard(model, probability, mark, phrase_end)`: `mark` is where the conversation's audio
starts — the wake phrase's beginning (`wake_word.send_wake_phrase`, the default: the agent hears "okay nabu,
what's the weather") or its end — and `phrase_end` is where the user's own speech starts counting. Everything
else (whether it starts a conversation, interrupts the agent, or means nothing) is the machine's table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from device.audio.wake.detector import Detection, WakeWordDetector
from device.audio.wake.listener import WakeWordListener
from device.audio.wake.speaker_guard import FAR_END_CUTOFF_SCALE, SpeakerGuard
from device.config.schema import WakeWordConfig
from device.config.wake_models import ModelSpecError
from device.core.vocabulary import Event, WakeWordHeard
from device.daemon.status import WakeStatus

if TYPE_CHECKING:
    from device.audio.engine import AudioEngine

log = logging.getLogger("device.daemon.wake")

FAR_END_REFRACTORY_S = 1.0


class WakeService:
    def __init__(self, config: WakeWordConfig, detector: WakeWordDetector, guard: SpeakerGuard,
                 engine: AudioEngine, feed: Callable[[Event], None]) -> None:
        self.config = config
        self.detector = detector
        self.guard = guard
        self._feed = feed
        self.listener = WakeWordListener(engine, detector, self._heard, guard=guard)

    @classmethod
    def build(cls, config: WakeWordConfig, engine: AudioEngine, feed: Callable[[Event], None]) -> WakeService:
        """The models of `wake_word.models`, at the pipeline's rate for the mic and the speaker's for the guard.
        ModelSpecError when one no longer loads (the config check passed, the file changed since)."""
        detector = WakeWordDetector.from_config(config, engine.sample_rate)
        far_cutoffs = {name: cutoff * FAR_END_CUTOFF_SCALE for name, cutoff in detector.cutoffs.items()}

        def far_end(rate: int) -> WakeWordDetector:
            return WakeWordDetector(config.models, rate, cutoffs=far_cutoffs, refractory_s=FAR_END_REFRACTORY_S)

        guard = SpeakerGuard(engine.player, far_end, engine.capture_time)
        return cls(config, detector, guard, engine, feed)

    @property
    def listening(self) -> bool:
        """Hearing now: started, not muted, and not waiting to start again after a failure (see `status().down`)."""
        return self.listener.listening

    def start(self) -> None:
        if not self.listener.running:
            self.listener.start()
            log.info("listening for the wake word models=%s send_wake_phrase=%s", ",".join(self.detector.names),
                     self.config.send_wake_phrase)

    async def stop(self) -> None:
        if self.listener.running:
            await self.listener.stop()
            log.info("not listening for the wake word (muted)")

    async def set_muted(self, muted: bool) -> None:
        if muted:
            await self.stop()
        else:
            self.start()

    async def close(self) -> None:
        await self.listener.stop()
        self.detector.close()
        self.guard.close()

    def status(self) -> WakeStatus:
        return WakeStatus(listening=self.listening, models=tuple(self.detector.names),
                          detections=self.listener.detections, ignored_own_voice=self.guard.vetoed,
                          heard_on_speaker=self.guard.heard_on_speaker, down=self.listener.down,
                          failures=self.listener.failures)

    def _heard(self, d: Detection) -> None:
        mark = d.start_index if self.config.send_wake_phrase else d.end_index
        self._feed(WakeWordHeard(d.model, round(d.probability, 3), mark=mark, phrase_end=d.end_index))


def build_wake(config: WakeWordConfig, engine: AudioEngine, feed: Callable[[Event], None]
               ) -> tuple[WakeService | None, str | None]:
    """The service, or (None, why) when a model no longer loads: the device then runs without its wake word (the
    button still works) and says so in the log and the status."""
    try:
        return WakeService.build(config, engine, feed), None
    except (ModelSpecError, OSError, ValueError) as e:
        why = f"the wake word is off: {e} (check wake_word.models with `voice-device check`)"
        log.error("%s", why)
        return None, why
