"""The livekit.rtc media objects the supervisor creates, behind one small seam so tests can stand in for them.

`RtcMedia` is the real thing: an `AudioSource` + `LocalAudioTrack` for the mic, an `AudioStream` for the
agent's voice. Nothing else in the session constructs rtc media objects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol


class Media(Protocol):
    def audio_source(self, sample_rate: int) -> Any: ...

    def mic_track(self, source: Any) -> Any: ...

    def audio_stream(self, track: Any, sample_rate: int) -> AsyncIterator[Any]:
        """Yields events with a `.frame` (an rtc.AudioFrame); has `aclose()`."""
        ...


class RtcMedia:
    def audio_source(self, sample_rate: int) -> Any:
        from livekit import rtc

        return rtc.AudioSource(sample_rate, 1, queue_size_ms=1000)

    def mic_track(self, source: Any) -> Any:
        from livekit import rtc

        return rtc.LocalAudioTrack.create_audio_track("microphone", source)

    def audio_stream(self, track: Any, sample_rate: int) -> Any:
        from livekit import rtc

        return rtc.AudioStream(track, sample_rate=sample_rate, num_channels=1)
