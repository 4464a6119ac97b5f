"""The livekit.rtc media objects the supervisor creates, behind one small seam so tests can stand in for them.

`RtcMedia` is the real thing: an `AudioSource` + `LocalAudioTrack` for the mic, an `AudioStream` for the
agent's voice. Nothing else in the session constructs rtc media objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from livekit import rtc


class Media(Protocol):
    def audio_source(self, sample_rate: int) -> rtc.AudioSource: ...

    def mic_track(self, source: rtc.AudioSource) -> rtc.LocalAudioTrack: ...

    def audio_stream(self, track: rtc.Track, sample_rate: int, frame_ms: int) -> rtc.AudioStream:
        """Yields `rtc.AudioFrameEvent`s of `frame_ms` each (their `.frame` is the agent's audio); has
        `aclose()`."""
        ...


class RtcMedia:
    def audio_source(self, sample_rate: int) -> rtc.AudioSource:
        from livekit import rtc

        return rtc.AudioSource(sample_rate, 1, queue_size_ms=1000)

    def mic_track(self, source: rtc.AudioSource) -> rtc.LocalAudioTrack:
        from livekit import rtc

        return rtc.LocalAudioTrack.create_audio_track("microphone", source)

    def audio_stream(self, track: rtc.Track, sample_rate: int, frame_ms: int) -> rtc.AudioStream:
        from livekit import rtc

        return rtc.AudioStream(track, sample_rate=sample_rate, num_channels=1, frame_size_ms=frame_ms)
