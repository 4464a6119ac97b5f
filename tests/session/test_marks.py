"""`Marks` (session/marks.py): a session's audio never begins before the last unmute."""

from __future__ import annotations

from device.session.marks import Marks
from tests.session.fakes import FakeAudioPort


def test_a_press_takes_its_pre_roll_but_never_reaches_back_past_the_last_unmute() -> None:
    audio = FakeAudioPort(sample_rate=16000)
    marks = Marks(audio, preroll_ms=500)
    audio.speak(1000)
    assert marks.press() == audio.mark(500) == 8000  # never muted: the whole pre-roll
    audio.speak(1000)  # captured while muted
    marks.unmuted()
    audio.speak(100)
    assert marks.press() == 32000 == audio.mark(100)  # the pre-roll starts at the unmute
    audio.speak(1000)
    assert marks.press() == audio.mark(500)  # long after the unmute: the whole pre-roll again


def test_a_mark_from_elsewhere_a_wake_phrase_is_clamped_the_same_way() -> None:
    audio = FakeAudioPort(sample_rate=16000)
    marks = Marks(audio, preroll_ms=500)
    audio.speak(1000)
    marks.unmuted()
    assert marks.clamp(100) == 16000
    assert marks.clamp(20000) == 20000
