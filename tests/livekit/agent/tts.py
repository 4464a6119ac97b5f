"""A TTS that speaks with espeak-ng (a local program): one WAV per utterance, streamed as raw PCM."""

from __future__ import annotations

import asyncio
import io
import uuid
import wave

from livekit.agents import tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

ESPEAK_RATE = 22050  # espeak-ng's output rate


class EspeakTTS(tts.TTS):
    def __init__(self) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=ESPEAK_RATE, num_channels=1)

    def synthesize(self, text: str, *,
                   conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> EspeakStream:
        return EspeakStream(tts=self, input_text=text, conn_options=conn_options)


class EspeakStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        proc = await asyncio.create_subprocess_exec("espeak-ng", "--stdout", self._input_text,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)
        data, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"espeak-ng exited {proc.returncode}")
        with wave.open(io.BytesIO(data)) as w:
            rate, pcm = w.getframerate(), w.readframes(w.getnframes())
        output_emitter.initialize(request_id=uuid.uuid4().hex, sample_rate=rate, num_channels=1,
                                  mime_type="audio/pcm")
        output_emitter.push(pcm)
        output_emitter.flush()
