"""Test audio for the daemon end-to-end tests: speech WAVs, and the measurements made on what the agent heard.

Speech comes from espeak-ng (resampled to 48 kHz by sox, so PulseAudio plays it bit for bit) with a faint noise
bed under it: espeak-ng leaves digital silence between words, and the stub's recorder starts live audio at the
first non-silent sample, so a seam falling in such a pause would look like a gap that the device did not make.

The measurements are pure numpy on int16 arrays:
- `find_lag`: where a reference signal sits in a recording (FFT cross-correlation, whole samples);
- `onset`: the first 10 ms block above a level;
- `local_lag`: the lag of a short stretch of a recording against the reference, searched around a guess;
- `seam_offset`: how much audio the live track added (+) or lost (−) at the pre-connect → live seam.
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 48000
# Opus's algorithmic look-ahead at 48 kHz (2.5 ms + 4 ms). The recorder starts live audio at the first non-silent
# decoded sample, and the codec smears up to this much faint pre-echo in front of the first sound: heard.wav can
# show up to this much EXTRA audio at the seam that the device did not send. A lost or repeated 10 ms frame
# still falls outside the tolerance.
OPUS_LOOKAHEAD_S = 0.0065


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: expected 16-bit mono")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return path


def speech(text: str, *, lead_s: float = 0.1, bed_rms: float = 200.0, seed: int = 3,
           voice: str = "en") -> np.ndarray:
    """`text` spoken by espeak-ng at 48 kHz, after `lead_s` of digital silence, with a faint noise bed under the
    speech (never digital silence once it has begun)."""
    with tempfile.TemporaryDirectory(prefix="vd-speech-") as tmp:
        raw, resampled = Path(tmp) / "espeak.wav", Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, capture_output=True, timeout=30)
        subprocess.run(["sox", str(raw), "-r", str(RATE), "-b", "16", "-c", "1", str(resampled)], check=True,
                       capture_output=True, timeout=30)
        voiced = read_wav(resampled).astype(np.float64)
    rng = np.random.default_rng(seed)
    bed = np.convolve(rng.standard_normal(len(voiced)), np.ones(8) / 8, mode="same")
    bed *= bed_rms / max(1e-9, float(np.sqrt(np.mean(bed ** 2))))
    body = np.clip(voiced + bed, -32000, 32000)
    return np.concatenate([np.zeros(int(lead_s * RATE)), body]).astype(np.int16)


def find_lag(reference: np.ndarray, recording: np.ndarray) -> int:
    """Index in `recording` where `reference[0]` sits (may be negative), by the peak of the cross-correlation."""
    ref, rec = reference.astype(np.float64), recording.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(ref) + len(rec))))
    corr = np.fft.irfft(np.fft.rfft(rec, n) * np.conj(np.fft.rfft(ref, n)), n)
    lag = int(np.argmax(corr))
    return lag - n if lag > n // 2 else lag


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    x, y = a[:n].astype(np.float64), b[:n].astype(np.float64)
    denom = float(np.sqrt(np.dot(x, x) * np.dot(y, y)))
    return float(np.dot(x, y)) / denom if denom > 0 else 0.0


def onset(samples: np.ndarray, level_dbfs: float = -50.0, step: int = RATE // 1000) -> int | None:
    """First sample index (1 ms resolution) where the next 10 ms are above `level_dbfs` RMS."""
    block = RATE // 100
    threshold = 32768.0 * 10 ** (level_dbfs / 20)
    x = samples.astype(np.float64)
    for i in range(0, max(0, len(x) - block), step):
        if float(np.sqrt(np.mean(x[i:i + block] ** 2))) > threshold:
            return i
    return None


@dataclass(frozen=True)
class LocalLag:
    lag: int  # samples: recording[start + k] ≈ reference[start + k - lag]
    correlation: float


def local_lag(reference: np.ndarray, recording: np.ndarray, start: int, length: int, guess: int,
              search: int = RATE // 50) -> LocalLag:
    """The lag of `recording[start:start+length]` against `reference`, searched within ±`search` of `guess`."""
    piece = recording[start:start + length].astype(np.float64)
    best = LocalLag(guess, -1.0)
    for lag in range(guess - search, guess + search + 1):
        s = start - lag
        if s < 0 or s + len(piece) > len(reference):
            continue
        c = correlation(reference[s:s + len(piece)], piece)
        if c > best.correlation:
            best = LocalLag(lag, c)
    return best


@dataclass(frozen=True)
class Seam:
    before: LocalLag  # the last stretch of pre-connect audio
    after: LocalLag  # the first stretch of live audio (past the codec's warm-up)

    @property
    def extra_samples(self) -> int:
        """Audio the live side added at the seam (+: an overlap or codec pre-echo; −: a gap)."""
        return self.after.lag - self.before.lag

    @property
    def extra_ms(self) -> float:
        return self.extra_samples * 1000 / RATE


def seam_offset(reference: np.ndarray, heard: np.ndarray, seam: int, guess: int,
                window_s: float = 0.2) -> Seam:
    """Compare where the reference sits just before and just after `seam` (live_first_sample_index)."""
    window = int(window_s * RATE)
    skip = int(0.01 * RATE)  # the codec's warm-up right after the seam
    before = local_lag(reference, heard, seam - window, window, guess)
    after = local_lag(reference, heard, seam + skip, window, before.lag)
    return Seam(before=before, after=after)


def voices(lines: list[tuple[str, str]], *, stagger_s: float = 0.35, seed: int = 3) -> np.ndarray:
    """Several espeak-ng voices talking at once, `(text, voice)` each, every one `stagger_s` after the one before:
    one voice's pause between words is filled by another's speech, so no stretch of a few tens of milliseconds
    is quiet once they all talk (a measurement window can not land on the noise bed). Peak normalised."""
    parts = [speech(text, lead_s=0.1 + i * stagger_s, seed=seed + i, voice=voice).astype(np.float64)
             for i, (text, voice) in enumerate(lines)]
    mixed = np.zeros(max(len(p) for p in parts))
    for part in parts:
        mixed[:len(part)] += part
    mixed *= 28000.0 / max(1.0, float(np.max(np.abs(mixed))))
    return mixed.astype(np.int16)


def continuation(reference: np.ndarray, recording: np.ndarray, start: int, guess: int, *, windows: int = 8,
                 window: int = RATE // 50, search: int = RATE // 25) -> list[LocalLag]:
    """The lag of each of `windows` consecutive `window`-long stretches of `recording` from `start`, each searched
    within ±`search` of `guess`: where the live audio after a seam sits in the reference, window by window (a
    receiver's jitter buffer may stretch its first packets, which shows as the lag drifting)."""
    return [local_lag(reference, recording, start + k * window, window, guess, search=search) for k in range(windows)]


def first_sound(samples: np.ndarray, level: float = 100.0, block: int = RATE // 1000) -> int | None:
    """Index of the first sample of the first 1 ms block above `level` RMS (refined to the first sample above half
    of it): where decoded audio begins, to a sample or two — finer than `onset`, whose 10 ms window reaches up to
    7 ms early. Stray near-zero samples (a receiver's playout before its first packet) do not count."""
    x = samples.astype(np.float64)
    n = len(x) // block
    loud = np.flatnonzero(np.sqrt(np.mean(x[: n * block].reshape(n, block) ** 2, axis=1)) > level)
    if len(loud) == 0:
        return None
    start = max(0, (int(loud[0]) - 1) * block)
    return start + int(np.flatnonzero(np.abs(x[start:start + 2 * block]) > level / 2)[0])
