"""The wake word: microWakeWord models over the processed microphone, and where each wake phrase began.

- `detector.py`: the models over 10 ms frames (`WakeWordDetector`, `Detection`).
- `phrase_start.py`: where the phrase began and ended, walked back over the levels from a detection.
- `listener.py`: the task that follows the ring and feeds the detector (`WakeWordListener`).
- `speaker_guard.py`: the same models on what the speaker played, so the device's own voice never wakes it.

Beside it, not in it: the model descriptions the config loader checks (`device/config/wake_models.py`, below the
audio layer), the daemon's wiring of a detection into the device machine (`device/daemon/wake.py`), the tuning
command (`device/tools/wake_scores.py`) and the 16 kHz decimator the follow-up window's VAD shares
(`device/audio/downsample.py`).
"""
