"""A recording STT: keeps exactly the frames the agent's pipeline fed each stream and returns a transcript.

It does not recognise words. Its transcript describes what it was given ("heard 2.4 seconds of speech"), so a
test can tell an empty turn from a real one, and the raw stream it wrote (`stt-N.raw`) is what the tests
compare with the reference signal. A flush (manual turn commit, or VAD end of speech) finalises the segment.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import stt
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, APIConnectOptions, NotGivenOr
from livekit.agents.utils import AudioBuffer

from tests.livekit.agent.record import Recorder

SPEECH_RMS = 300.0  # int16 RMS of a 10 ms block counted as speech (the test speech is ~3000, its bed 200)


def voiced_seconds(samples: np.ndarray, rate: int) -> float:
    block = rate // 100
    n = len(samples) // block
    if n == 0:
        return 0.0
    blocks = samples[: n * block].astype(np.float64).reshape(n, block)
    return float(np.count_nonzero(np.sqrt(np.mean(blocks**2, axis=1)) > SPEECH_RMS)) / 100


def transcript_for(seconds: float) -> str:
    return f"heard {seconds:.1f} seconds of speech"


class RecordingSTT(stt.STT):
    def __init__(self, recorder: Recorder | None = None) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=False, manual_flush=True))
        self.recorder = recorder or Recorder(None)

    async def _recognize_impl(self, buffer: AudioBuffer, *, language: NotGivenOr[str] = NOT_GIVEN,
                              conn_options: APIConnectOptions) -> stt.SpeechEvent:
        frame = rtc.combine_audio_frames(buffer)
        samples = np.frombuffer(frame.data, dtype=np.int16)
        return _final(transcript_for(voiced_seconds(samples, frame.sample_rate)))

    def stream(self, *, language: NotGivenOr[str] = NOT_GIVEN,
               conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> RecordingStream:
        return RecordingStream(stt=self, conn_options=conn_options)


def _final(text: str) -> stt.SpeechEvent:
    return stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT, request_id=uuid.uuid4().hex,
                           alternatives=[stt.SpeechData(language="en", text=text, confidence=1.0)])


class RecordingStream(stt.RecognizeStream):
    _stt: RecordingSTT

    async def _run(self) -> None:
        recorder = self._stt.recorder
        index, path = recorder.new_stream()
        recorder.event("stt_stream_opened", stream=index)
        samples, rate = 0, 0
        segment: list[np.ndarray] = []
        with path.open("wb") as raw:
            async for item in self._input_ch:
                if isinstance(item, self._FlushSentinel):
                    self._finalise(index, segment, rate, samples)
                    segment = []
                    continue
                data = np.frombuffer(item.data, dtype=np.int16)
                if rate and item.sample_rate != rate:
                    recorder.event("stt_rate_changed", stream=index, old=rate, new=item.sample_rate)
                rate = item.sample_rate
                raw.write(data.tobytes())
                raw.flush()
                samples += len(data)
                segment.append(data)
        recorder.event("stt_stream_closed", stream=index, samples=samples, sample_rate=rate)

    def _finalise(self, index: int, segment: list[Any], rate: int, samples: int) -> None:
        seconds = voiced_seconds(np.concatenate(segment), rate) if segment and rate else 0.0
        text = transcript_for(seconds)
        self._stt.recorder.event("stt_final", stream=index, text=text, voiced_s=seconds, at_sample=samples)
        if seconds > 0:
            self._event_ch.send_nowait(_final(text))
