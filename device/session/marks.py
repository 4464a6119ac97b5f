"""Where a session's audio begins (`Marks`): a press's pre-roll or a wake phrase's start, never before the last unmute.

Mute means mute: the ring keeps capturing while the device is muted, and nothing it heard then may reach an agent,
so no session starts from a ring index before the last unmute. The unmute's index is taken when the device machine
unmutes (the daemon's event path, `App.feed`), not when the session hears of it: a press right after an unmute,
while an earlier end still tears down, keeps what the user says meanwhile. One `Marks` per configuration; every
mark a session starts from passes through it — the starts the daemon asks for (stamped in `App.feed`) and the
always_on restarts a session-process proxy makes by itself (`process/remote.py`).
"""

from __future__ import annotations

from device.session.ports import DaemonAudio


class Marks:
    def __init__(self, audio: DaemonAudio, preroll_ms: int) -> None:
        self._audio = audio
        self._preroll_ms = preroll_ms
        self._unmuted_at = 0  # the ring index of the last unmute

    def unmuted(self) -> None:
        """The device was unmuted now: the mic's audio from here on may reach an agent."""
        self._unmuted_at = self._audio.mark(0)

    def press(self) -> int:
        """A start's mark taken now: the pre-roll (`audio.preroll_ms`), not reaching back past the last unmute."""
        return self.clamp(self._audio.mark(self._preroll_ms))

    def clamp(self, mark: int) -> int:
        """`mark`, or the last unmute if that came later."""
        return max(mark, self._unmuted_at)
