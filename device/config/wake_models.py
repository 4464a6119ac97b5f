"""Wake-word model descriptions: which built-in microWakeWord models exist, and what a model's JSON file says.

Here, below the audio layer, so the loader can reject a bad `wake_word.models` entry with file:line:key before
anything starts, and the detector reads the same description when it loads the model. Nothing is loaded: the
built-in models' folder is found without importing pymicro_wakeword (its import loads numpy and the feature
extractor), and the TFLite file is only checked to exist.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

# The models that ship inside the pymicro-wakeword 2.5 wheel (tests/audio/test_wakeword.py checks the list).
BUILTIN_WAKE_WORDS = ("okay_nabu", "hey_jarvis", "alexa", "hey_mycroft")


class ModelSpecError(Exception):
    """A wake-word entry that names no usable model; the message says what to do."""


@dataclass(frozen=True)
class ModelDescription:
    name: str  # what detections and `wake_word.cutoffs` call it: the built-in name or the JSON file's stem
    json_path: Path
    tflite_path: Path
    wake_word: str  # the phrase, as the JSON spells it ("Okay Nabu")
    cutoff: float  # the JSON's probability_cutoff
    sliding_window: int  # the JSON's sliding_window_size


def is_path(spec: str) -> bool:
    """A path to a JSON file rather than a built-in name."""
    return "/" in spec or spec.endswith(".json")


def model_name(spec: str) -> str:
    return Path(spec).stem if is_path(spec) else spec


def builtin_dir() -> Path:
    found = importlib.util.find_spec("pymicro_wakeword")
    if found is None or not found.submodule_search_locations:
        raise ModelSpecError("pymicro-wakeword is not installed (pip install pymicro-wakeword)")
    return Path(next(iter(found.submodule_search_locations))) / "models"


def locate(spec: str, base_dir: Path | None = None) -> Path:
    """The JSON file of a built-in name, or `spec` as a path (relative to `base_dir`, the config's folder)."""
    if not is_path(spec):
        if spec not in BUILTIN_WAKE_WORDS:
            raise ModelSpecError(f"no built-in wake word {spec!r}; the built-in ones are "
                                 f"{', '.join(BUILTIN_WAKE_WORDS)} (or give the path of a microWakeWord JSON file)")
        return builtin_dir() / f"{spec}.json"
    path = Path(spec).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path.resolve()


def _is_tflite(path: Path) -> bool:
    """A TensorFlow Lite flatbuffer carries the file identifier "TFL3" at bytes 4–8."""
    try:
        with path.open("rb") as f:
            return f.read(8)[4:8] == b"TFL3"
    except OSError:
        return False


def describe(spec: str, base_dir: Path | None = None) -> ModelDescription:
    """Read a model's JSON file; ModelSpecError naming the file when it is missing or not a microWakeWord model."""
    path = locate(spec, base_dir)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        tflite = path.parent / config["model"]
        micro = config["micro"]
        cutoff, window = float(micro["probability_cutoff"]), int(micro["sliding_window_size"])
        phrase = str(config.get("wake_word") or model_name(spec))
    except FileNotFoundError:
        raise ModelSpecError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelSpecError(f"{path} is not a readable JSON file ({e})") from None
    except (KeyError, TypeError, ValueError) as e:
        raise ModelSpecError(f"{path} is not a microWakeWord model description (missing or bad {e})") from None
    if config.get("type", "micro") != "micro":
        raise ModelSpecError(f"{path}: type {config.get('type')!r} is not a microWakeWord model")
    if not tflite.is_file():
        raise ModelSpecError(f"{path} names the model file {tflite}, which does not exist")
    if not _is_tflite(tflite):
        raise ModelSpecError(f"{tflite} (named by {path}) is not a TensorFlow Lite model")
    if not 0.0 < cutoff < 1.0 or window < 1:
        raise ModelSpecError(f"{path}: probability_cutoff must be between 0 and 1 and sliding_window_size at least 1")
    return ModelDescription(model_name(spec), path, tflite, phrase, cutoff, window)
