"""The wake-word detector: microWakeWord models over the processed microphone, reporting WHERE in the ring each
wake phrase was heard.

Feed it what the pump wrote to the processed ring (the echo canceller's output), with ring indices, in any
chunking of whole 10 ms frames: `feed(first_index, samples)`. It returns a `Detection` — the model, its
probability, the ring index at which it fired and the estimated ring index where the wake phrase began, so a
session's pre-connect audio can start before the phrase (or after it).

Per 10 ms of audio, at the pipeline rate (16, 24 or 48 kHz):
  downsample to 16 kHz (device/audio/downsample.py) → the microWakeWord front end (`micro_features_cpp`, 40
  noise-reduced log-mel features, shared by every model) → every `stride` frames (3: 30 ms), each model's
  TFLite interpreter on the quantised features → the mean of the last `sliding_window` probabilities, compared
  with the model's cutoff (detection when the mean is ABOVE it, as microWakeWord does).
Buffers are preallocated; what still allocates per 10 ms is inside the libraries (the front end returns a
list of 40 floats). We drive `pymicro_wakeword.MicroWakeWord`'s interpreter ourselves instead of calling its
`process_streaming_prob`, which builds four arrays per call and averages with `statistics.mean`: half the
CPU, same probabilities (tests/audio/test_wakeword.py compares the two on real speech).

Where the phrase began: device/audio/wake/phrase_start.py (the levels of the last seconds, walked back from the
detection to the pause before the phrase; at most 2 s back).

Refractory: after a detection, nothing is reported for `refractory_s` of audio (counted in samples, not wall
time: the detector is a pure function of its input and runs faster than real time in tests).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.audio.downsample import TARGET_RATE, Frames16k
from device.audio.wake.phrase_start import PhraseStart
from device.config.schema import WakeWordConfig
from device.config.wake_models import ModelDescription, ModelSpecError, describe, model_name

log = logging.getLogger("device.audio.wake.detector")

FRAME_16K = TARGET_RATE // 100  # 160 samples: the front end's step
FEATURES = 40


@dataclass(frozen=True, slots=True)
class Detection:
    model: str
    probability: float  # the windowed mean that crossed the cutoff
    index: int  # ring index just past the audio the detector had consumed when it fired
    start_index: int  # estimated ring index where the wake phrase began (<= index)
    end_index: int  # estimated ring index where it ended: start_index <= end_index <= index (= index when the
    # speaker went straight on; the detection comes 0.1–0.9 s after the phrase)


def _tflite_library() -> ctypes.CDLL:
    import pymicro_wakeword

    lib_dir = Path(pymicro_wakeword.__file__).parent / "lib"
    found = next(iter(lib_dir.glob("*tensorflowlite_c.*")), None)
    if found is None:
        raise ModelSpecError(f"pymicro-wakeword has no TensorFlow Lite library in {lib_dir} (reinstall it)")
    lib = ctypes.CDLL(str(found), mode=ctypes.RTLD_GLOBAL)
    lib.TfLiteModelCreateFromFile.argtypes = [ctypes.c_char_p]
    lib.TfLiteModelCreateFromFile.restype = ctypes.c_void_p
    lib.TfLiteModelDelete.argtypes = [ctypes.c_void_p]
    lib.TfLiteModelDelete.restype = None
    return lib


def _check_loadable(tflite: Path) -> None:
    """Let TensorFlow Lite verify the file first: pymicro-wakeword hands a model that failed to load (NULL) to
    the interpreter, which crashes the process (SIGSEGV, measured with a damaged file)."""
    lib = _tflite_library()
    model = lib.TfLiteModelCreateFromFile(str(tflite).encode())
    if not model:
        raise ModelSpecError(f"{tflite} is not a valid TensorFlow Lite model (damaged or truncated?)")
    lib.TfLiteModelDelete(model)


def _tensor_view(address: int | None, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A numpy array over a TFLite tensor's memory (valid while its interpreter lives)."""
    if not address:
        raise ModelSpecError("the model's tensors were not allocated")
    kind = np.dtype(dtype)
    count = int(np.prod(shape))
    buffer = (ctypes.c_char * (count * kind.itemsize)).from_address(address)
    return np.frombuffer(buffer, dtype=kind, count=count).reshape(shape)


class _Model:
    """One microWakeWord interpreter fed `stride` feature frames at a time, without per-call allocation."""

    def __init__(self, description: ModelDescription, cutoff: float | None) -> None:
        from pymicro_wakeword import MicroWakeWord

        _check_loadable(description.tflite_path)
        try:
            self._mww = MicroWakeWord.from_config(description.json_path)
        except Exception as e:  # the TFLite C API reports a bad file as a NULL tensor (RuntimeError) or worse
            raise ModelSpecError(f"{description.json_path}: the model could not be loaded ({e})") from None
        self.name = description.name
        self.base_cutoff = description.cutoff if cutoff is None else cutoff
        self.cutoff = self.base_cutoff  # the one in force (lowered while the speaker plays: see scale_cutoffs)
        self.window = description.sliding_window
        self._bind()
        self._probs = [0.0] * self.window
        self._count = 0  # probabilities seen since the last reset (the mean needs a full window)
        self.peak = 0.0  # the highest windowed mean since take_peak()

    def _bind(self) -> None:
        """Views of the interpreter's own input and output tensors (TfLiteTensorData: the arena is allocated once,
        and reset() reloads the interpreter, so we bind again then): a run writes the quantised features into
        the input in place and reads the probability in place — one ctypes call (Invoke) per run, not three."""
        m = self._mww
        lib = m.lib
        self.stride = int(m.stride)
        size = self.stride * FEATURES
        if lib.TfLiteTensorByteSize(m.input_tensor) != size * np.dtype(m.input_dtype).itemsize:
            raise ModelSpecError(f"{self.name}: the model's input is not {self.stride} × {FEATURES} features")
        lib.TfLiteTensorData.argtypes = [ctypes.c_void_p]
        lib.TfLiteTensorData.restype = ctypes.c_void_p
        self._input = _tensor_view(lib.TfLiteTensorData(m.input_tensor), (self.stride, FEATURES), m.input_dtype)
        self._output = _tensor_view(lib.TfLiteTensorData(m.output_tensor), (1,), m.output_dtype)
        self._frames = np.zeros((self.stride, FEATURES), dtype=np.float32)
        self._scaled = np.zeros((self.stride, FEATURES), dtype=np.float32)
        info = np.iinfo(m.input_dtype)
        self._qmin, self._qmax = np.float32(info.min), np.float32(info.max)
        self._inv_scale = np.float32(1.0 / m.input_scale)
        self._zero = np.float32(m.input_zero_point)
        self._out_zero, self._out_scale = float(m.output_zero_point), float(m.output_scale)
        self._invoke, self._interpreter = lib.TfLiteInterpreterInvoke, m.interpreter
        self._filled = 0

    def step(self, features: list[float]) -> float | None:
        """Add one feature frame; every `stride` frames run the model: the windowed mean once the window is full
        (0.0 before), None between runs."""
        self._frames[self._filled] = features
        self._filled += 1
        if self._filled < self.stride:
            return None
        self._filled = 0
        scaled = self._scaled
        np.multiply(self._frames, self._inv_scale, out=scaled)
        scaled += self._zero
        np.rint(scaled, out=scaled)
        np.clip(scaled, self._qmin, self._qmax, out=scaled)  # the library would wrap around instead
        np.copyto(self._input, scaled, casting="unsafe")
        self._invoke(self._interpreter)
        prob = (float(self._output[0]) - self._out_zero) * self._out_scale
        probs = self._probs
        probs[self._count % self.window] = prob
        self._count += 1
        if self._count < self.window:
            return 0.0
        mean = sum(probs) / self.window
        if mean > self.peak:
            self.peak = mean
        return mean

    def reset(self) -> None:
        """Forget everything heard: the streaming model keeps state inside the interpreter, so reload it."""
        self._mww.reset()
        self._bind()
        self._count = 0

    def close(self) -> None:
        self._mww.close()


class WakeWordDetector:
    """Streaming detection of one or more wake words in pipeline audio addressed by ring index."""

    def __init__(self, models: Sequence[str], rate: int, *, cutoffs: Mapping[str, float] | None = None,
                 refractory_s: float = 2.0, base_dir: Path | None = None, max_chunk_ms: int = 200) -> None:
        """`models`: built-in names or paths of microWakeWord JSON files (relative to `base_dir`); `cutoffs`:
        per-model overrides of the JSON's probability cutoff, by model name. ModelSpecError when one is unusable."""
        from micro_features_cpp import create_frontend

        if not models:
            raise ValueError("at least one wake-word model is needed")
        cutoffs = cutoffs or {}
        self.rate = rate
        self._models = [_Model(describe(spec, base_dir), cutoffs.get(model_name(spec))) for spec in models]
        self._in = Frames16k(rate, max_chunk_ms)
        self._frontend = create_frontend()
        self._refractory = int(refractory_s * TARGET_RATE)
        self._phrase = PhraseStart(FRAME_16K)
        self._quiet_until = 0  # no detection before this 16 kHz position (refractory)

    @classmethod
    def from_config(cls, config: WakeWordConfig, rate: int) -> WakeWordDetector:
        """The detector `wake_word:` describes (its paths are absolute once the loader has checked them)."""
        return cls(config.models, rate, cutoffs=config.cutoffs, refractory_s=config.refractory_s)

    @property
    def gaps(self) -> int:
        """Jumps in the ring indices fed: audio the detector never saw."""
        return self._in.gaps

    @property
    def names(self) -> list[str]:
        return [m.name for m in self._models]

    @property
    def cutoffs(self) -> dict[str, float]:
        """Each model's configured cutoff."""
        return {m.name: m.base_cutoff for m in self._models}

    def scale_cutoffs(self, scale: float) -> None:
        """Detect above `scale` × each configured cutoff from now on (1.0: as configured)."""
        for m in self._models:
            m.cutoff = m.base_cutoff * scale

    def take_peaks(self) -> dict[str, float]:
        """Each model's highest windowed probability since the last call (for tuning: `voice-device wake-test`)."""
        peaks = {m.name: m.peak for m in self._models}
        for m in self._models:
            m.peak = 0.0
        return peaks

    def feed(self, first_index: int, samples: np.ndarray) -> Detection | None:
        """Process whole 10 ms frames of pipeline audio starting at ring index `first_index`; the first
        detection they complete, if any (the refractory period makes a second one in the same chunk impossible
        for any chunk shorter than `refractory_s`)."""
        found: Detection | None = None
        for frame in self._in.frames(first_index, samples):
            hit = self._frame(frame)
            found = found or hit
        return found

    def reset(self) -> None:
        """Start afresh (after a long gap, or when the mic comes back from mute): models, front end, history."""
        from micro_features_cpp import reset_frontend

        for m in self._models:
            m.reset()
        reset_frontend(self._frontend)
        self._in.reset()
        self._phrase.reset()

    def close(self) -> None:
        for m in self._models:
            m.close()

    # ---- per 10 ms -----------------------------------------------------------------------------------------

    def _frame(self, pcm16: np.ndarray) -> Detection | None:
        from micro_features_cpp import process_samples

        found: Detection | None = None
        self._phrase.add(pcm16)
        frame_start = self._in.position - FRAME_16K
        offset = 0
        while offset < FRAME_16K:  # the front end may take fewer samples than offered when a window completes
            features, used = process_samples(self._frontend, pcm16[offset:])
            offset += used
            if not features:
                if used == 0:
                    break
                continue
            for model in self._models:
                prob = model.step(features)
                at = frame_start + offset
                if prob is not None and prob > model.cutoff and found is None and at >= self._quiet_until:
                    found = self._detection(model.name, prob, at)
        return found

    def _detection(self, name: str, prob: float, at_16k: int) -> Detection:
        self._quiet_until = at_16k + self._refractory
        back, end_back = self._phrase.extent()
        index = self._in.ring_index(at_16k)
        start = min(self._in.ring_index(self._in.position - back * FRAME_16K), index)
        end = min(max(self._in.ring_index(self._in.position - end_back * FRAME_16K), start), index)
        return Detection(name, prob, index, start, end)
