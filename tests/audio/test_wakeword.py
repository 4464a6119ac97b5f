"""The wake-word detector on generated speech (no sound card): each built-in model hears its phrase, ordinary
speech, noise and music wake nothing, and every detection says where in the ring the phrase was.

The audio comes from espeak-ng (tests/audio/corpus.py, synthesised once per session) at the pipeline's 48 kHz and
is fed as the pump hands it out: whole 10 ms frames, 30 ms chunks, with ring indices. No sleeping: the detector
is a pure function of its input and runs faster than real time. Rates and false wakes are printed (`-s`) and
recorded as test properties; benchmarks/wakeword.py reports the same figures.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from device.audio.wake.detector import Detection, WakeWordDetector
from device.config.wake_models import BUILTIN_WAKE_WORDS, ModelSpecError, builtin_dir
from tests.audio import corpus
from tests.audio.corpus import POSITIVES, positive_clips, stream

RATE = corpus.RATE
BLOCK = RATE * 30 // 1000
ALL = list(POSITIVES)
EARLY_S, LATE_S = 0.35, 0.05  # a phrase start may be estimated this much before / after the true one


def run(detector: WakeWordDetector, audio: np.ndarray, block: int = BLOCK, first: int = 0) -> list[Detection]:
    found = []
    for i in range(0, audio.shape[0], block):
        d = detector.feed(first + i, audio[i : i + block])
        if d is not None:
            found.append(d)
    return found


def seconds(samples: int, rate: int = RATE) -> float:
    return samples / rate


def test_the_built_in_models_are_the_ones_pymicro_wakeword_ships():
    from pymicro_wakeword import Model

    assert set(BUILTIN_WAKE_WORDS) == {m.value for m in Model}
    assert all((builtin_dir() / f"{name}.json").is_file() for name in BUILTIN_WAKE_WORDS)


def test_our_interpreter_loop_scores_exactly_as_pymicro_wakeword_does(speech_at):
    """We drive the TFLite interpreter ourselves (preallocated buffers); the probabilities must be the library's."""
    from micro_features_cpp import create_frontend, process_samples
    from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

    from device.audio.wake.detector import _Model
    from device.config.wake_models import describe

    audio, _ = stream(positive_clips(speech_at(16000), "hey_jarvis")[:3], rate=16000, warmup_s=1.0)
    reference = MicroWakeWord.from_builtin(Model.HEY_JARVIS)
    features = MicroWakeWordFeatures()
    theirs = [reference.process_streaming_prob(f) for f in features.process_streaming(audio.tobytes())]
    theirs = theirs[reference.stride - 1 :: reference.stride]  # between runs the library returns 0.0
    ours_model = _Model(describe("hey_jarvis"), None)
    frontend = create_frontend()
    ours = []
    for i in range(0, audio.shape[0] - 159, 160):
        got, used = process_samples(frontend, audio[i : i + 160])
        assert used == 160
        if got and (p := ours_model.step(got)) is not None:
            ours.append(p)
    assert len(ours) == len(theirs) > 300
    assert max(theirs) > 0.97  # the phrases were heard: the comparison covers high scores too
    assert np.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("model", ALL)
def test_each_built_in_model_hears_its_phrase_in_the_voices_measured_for_it(speech, model, record_property):
    clips = positive_clips(speech, model)
    audio, placed = stream(clips)
    detector = WakeWordDetector(ALL, RATE)  # all four listening at once, as a device could
    found = run(detector, audio)
    hits, misses = 0, []
    for clip, at in placed:
        mine = [d for d in found if at + clip.start <= d.index < at + clip.samples.shape[0]]
        assert all(d.model == model for d in mine), f"{clip.label} woke {[d.model for d in mine]}"
        if not mine:
            misses.append(clip.label)
            continue
        hits += 1
        (d,) = mine
        phrase_start, phrase_end = at + clip.start, at + clip.end
        assert -EARLY_S <= seconds(d.start_index - phrase_start) <= LATE_S, clip.label
        assert -0.15 <= seconds(d.end_index - phrase_end) <= 0.1, clip.label
        assert -0.1 <= seconds(d.index - phrase_end) <= 1.0, clip.label  # it fires once the phrase is over
        assert d.probability > detector.cutoffs[model]
    rate = hits / len(placed)
    print(f"{model}: detected {hits}/{len(placed)} ({100 * rate:.0f} %); missed: {misses or 'none'}")
    record_property(f"detection_rate_{model}", rate)
    assert len(found) == hits, "a detection outside every phrase (twice, or from nothing)"
    assert rate >= 0.9, f"{model} heard {hits}/{len(placed)}; missed {misses}"


def test_ten_minutes_of_other_speech_noise_and_music_wake_none_of_the_models(speech, other_speech, record_property):
    others = [
        corpus.mix(corpus.noise(RATE * 60, 1036.0, seed=21)),  # white noise, -30 dBFS
        corpus.mix(corpus.noise(RATE * 60, 1036.0, seed=22, color="pink")),
        corpus.tv_like(60.0),
        corpus.babble(speech, 60.0),
    ]
    audio = np.concatenate([other_speech, *others])
    detector = WakeWordDetector(ALL, RATE)
    found = run(detector, audio)
    minutes = seconds(audio.shape[0]) / 60
    peaks = detector.take_peaks()
    print(f"false wakes: {len(found)} in {minutes:.1f} min ({len(found) * 60 / minutes:.1f} per hour); "
          f"highest scores {', '.join(f'{k} {v:.3f}' for k, v in peaks.items())}")
    record_property("false_wakes_per_hour", len(found) * 60 / minutes)
    assert seconds(other_speech.shape[0]) >= 600
    assert max(peaks.values()) > 0.01  # the models were listening, not fed silence
    assert found == [], f"woke on ordinary audio: {found}"


def _phrase(speech: corpus.Speech, model: str = "okay_nabu", voice: str = "en-us", wpm: int = 150) -> np.ndarray:
    said = speech.say(POSITIVES[model][0], voice, wpm)
    s, e = corpus.sounding(said)
    return said[s:e].astype(np.float64)


def _bed(seconds_: float, seed: int = 31) -> np.ndarray:
    return corpus.noise(int(seconds_ * RATE), 60.0, seed=seed, color="pink")


def test_after_other_speech_the_phrase_start_is_found_at_the_end_of_the_pause(speech):
    talk = speech.say("the weather was fine so we went out for a long walk", "en-gb-x-rp", 160).astype(np.float64)
    phrase = _phrase(speech)
    parts = [np.zeros(3 * RATE), talk, np.zeros(RATE // 2), phrase, np.zeros(RATE)]
    audio = corpus.mix(np.concatenate(parts), _bed(sum(p.shape[0] for p in parts) / RATE))
    start = 3 * RATE + talk.shape[0] + RATE // 2
    (d,) = run(WakeWordDetector(["okay_nabu"], RATE), audio)
    assert -EARLY_S <= seconds(d.start_index - start) <= LATE_S
    assert d.start_index > 3 * RATE + talk.shape[0]  # the other speech is not taken for the phrase


def test_a_phrase_run_straight_on_from_other_speech_is_never_cut(speech):
    talk = speech.say("and then I said", "en-us", 170).astype(np.float64)
    phrase = _phrase(speech)
    parts = [np.zeros(3 * RATE), talk, phrase, np.zeros(RATE)]
    audio = corpus.mix(np.concatenate(parts), _bed(sum(p.shape[0] for p in parts) / RATE))
    start = 3 * RATE + talk.shape[0]
    (d,) = run(WakeWordDetector(["okay_nabu"], RATE), audio)
    assert seconds(d.start_index - start) <= LATE_S  # at or before the phrase...
    assert seconds(d.index - d.start_index) <= 2.0 + 0.05  # ...and no more than two seconds back
    assert d.start_index <= d.end_index <= d.index


def test_the_same_wake_word_again_within_the_refractory_period_is_not_reported(speech):
    phrase = _phrase(speech)
    gap = np.zeros(int(0.4 * RATE))
    body = np.concatenate([np.zeros(3 * RATE), phrase, gap, phrase, np.zeros(RATE)])
    audio = corpus.mix(body, _bed(body.shape[0] / RATE))
    assert len(run(WakeWordDetector(["okay_nabu"], RATE, refractory_s=2.0), audio)) == 1
    twice = run(WakeWordDetector(["okay_nabu"], RATE, refractory_s=0.5), audio)
    assert len(twice) == 2 and twice[1].start_index > twice[0].index


def test_a_cutoff_override_decides_what_counts(speech):
    audio, _ = stream(positive_clips(speech, "okay_nabu")[:4])
    assert len(run(WakeWordDetector(["okay_nabu"], RATE), audio)) == 4
    strict = WakeWordDetector(["okay_nabu", "alexa"], RATE, cutoffs={"okay_nabu": 0.999})
    assert strict.cutoffs == {"okay_nabu": 0.999, "alexa": 0.9}
    assert run(strict, audio) == []


def test_listening_for_hours_holds_no_memory_that_grows_with_the_audio(speech):
    """Buffers are preallocated: after a warm-up, a minute more of audio leaves nothing behind (what the front end
    allocates per 10 ms — a list of 40 floats — is freed at once)."""
    import tracemalloc

    audio, _ = stream(positive_clips(speech, "alexa")[:4])
    detector = WakeWordDetector(ALL, RATE)
    run(detector, audio)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for k in range(4):
            run(detector, audio, first=(k + 1) * audio.shape[0])
        grown = sum(d.size_diff for d in tracemalloc.take_snapshot().compare_to(before, "filename") if d.size_diff > 0)
    finally:
        tracemalloc.stop()
    assert seconds(4 * audio.shape[0]) > 40
    assert grown < 16_000, f"{grown} bytes kept after {seconds(4 * audio.shape[0]):.0f} s of audio"


def test_how_the_audio_is_chunked_changes_nothing(speech):
    audio, _ = stream(positive_clips(speech, "alexa")[:4])
    in_10ms = run(WakeWordDetector(["alexa"], RATE), audio, block=RATE // 100)
    in_200ms = run(WakeWordDetector(["alexa"], RATE), audio, block=RATE // 5)
    assert len(in_10ms) == 4
    assert in_10ms == in_200ms


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_detections_and_their_ring_indices_hold_at_every_pipeline_rate(speech_at, rate):
    audio, placed = stream(positive_clips(speech_at(rate), "okay_nabu")[::3], rate=rate)
    first = 7 * rate  # the ring does not start at zero on a device that has been up for a while
    found = run(WakeWordDetector(["okay_nabu"], rate), audio, block=rate * 30 // 1000, first=first)
    assert len(found) >= len(placed) - 1
    for d in found:
        clip, at = next((c, a) for c, a in placed if first + a <= d.index < first + a + c.samples.shape[0])
        assert -EARLY_S <= seconds(d.start_index - first - at - clip.start, rate) <= LATE_S


def test_a_jump_in_the_ring_indices_is_counted_and_indices_after_it_stay_right(speech):
    clips = positive_clips(speech, "okay_nabu")[:2]
    detector = WakeWordDetector(["okay_nabu"], RATE)
    warm, _ = stream([], warmup_s=3.0)
    run(detector, warm)
    skipped = 5 * RATE + 480 * 7  # the reader fell behind: audio the detector never saw
    at = warm.shape[0] + skipped
    (d,) = run(detector, clips[0].samples, first=at)
    assert detector.gaps == 1
    assert -EARLY_S <= seconds(d.start_index - at - clips[0].start) <= LATE_S
    assert d.start_index >= at  # nothing from before the jump is part of the phrase
    detector.reset()  # as after a mute: everything forgotten, and it still hears
    assert run(detector, np.concatenate([warm, clips[1].samples]), first=10**9)


def _copy_model(tmp_path, name: str) -> str:
    src = builtin_dir()
    description = json.loads((src / "okay_nabu.json").read_text())
    description["model"] = f"{name}.tflite"
    shutil.copy(src / "okay_nabu.tflite", tmp_path / f"{name}.tflite")
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(description))
    return str(path)


def test_a_model_given_by_path_is_loaded_and_reported_by_its_file_name(tmp_path, speech):
    path = _copy_model(tmp_path, "kitchen")
    audio, _ = stream(positive_clips(speech, "okay_nabu")[:2])
    found = run(WakeWordDetector([path], RATE), audio)
    assert [d.model for d in found] == ["kitchen", "kitchen"]


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("no-json", "no such file"),
        ("bad-json", "not a readable JSON file"),
        ("no-cutoff", "missing or bad 'probability_cutoff'"),
        ("no-tflite", "does not exist"),
        ("not-tflite", "is not a TensorFlow Lite model"),
        ("truncated", "not a valid TensorFlow Lite model"),  # TFLite's own check: the library would crash on it
    ],
)
def test_an_unusable_model_file_is_an_error_that_names_it(tmp_path, damage, words):
    path = _copy_model(tmp_path, "word")
    description = json.loads((tmp_path / "word.json").read_text())
    tflite = tmp_path / "word.tflite"
    if damage == "no-json":
        (tmp_path / "word.json").unlink()
    elif damage == "bad-json":
        (tmp_path / "word.json").write_text("{not json")
    elif damage == "no-cutoff":
        del description["micro"]["probability_cutoff"]
        (tmp_path / "word.json").write_text(json.dumps(description))
    elif damage == "no-tflite":
        tflite.unlink()
    elif damage == "not-tflite":
        tflite.write_bytes(b"ONNX" * 500)
    else:
        tflite.write_bytes(tflite.read_bytes()[:20000])
    with pytest.raises(ModelSpecError) as info:
        WakeWordDetector([path], RATE)
    assert words in str(info.value) and "word." in str(info.value)


def test_an_unknown_built_in_name_lists_the_known_ones():
    with pytest.raises(ModelSpecError, match=r"hey_siri.*okay_nabu, hey_jarvis, alexa, hey_mycroft"):
        WakeWordDetector(["hey_siri"], RATE)
