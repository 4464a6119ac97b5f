"""`Components` as `App.feed`, `App._execute` and `App.handle` use it, with fakes in place of the hardware: the daemon's
event path run in-process over the real machine and the real session supervisor (tests/daemon/test_press_mark.py,
tests/promises/test_model.py). Everything a real `Components` holds that those paths read is here, so a new field
there that the paths need breaks these tests at once instead of hiding behind a partial fake."""

from __future__ import annotations

from typing import Any

from device.config.schema import Config
from device.controls.machine import initial
from device.controls.timers import LoopTimers
from device.session.marks import Marks


class Board:
    """The LEDs and buttons: nothing to show on, no buttons to drive."""

    def __init__(self) -> None:
        self.buttons: dict[str, Any] = {}

    def show(self, snapshot: Any) -> None:
        pass


class FakeParts:
    def __init__(self, config: Config, audio: Any, supervisor: Any, timers: LoopTimers) -> None:
        self.config = config
        self.audio = audio  # a FakeAudioPort with play_earcon
        self.supervisor = supervisor
        self.timers = timers
        self.board = Board()
        self.snapshot = initial(config.session.mode, config.controls.gestures)
        self.simulator = None
        self.mixer = None
        self.wake = None
        self.wake_error = None
        self.marks = Marks(audio, config.audio.preroll_ms)

    def wake_status(self) -> None:
        return None  # no wake word listened for
