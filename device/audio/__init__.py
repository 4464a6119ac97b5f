"""Audio: the device's ears and mouth.

Owns PyAudio capture and playback streams (callback mode), the preallocated pre-roll ring, the pump that cuts
exact 10 ms frames and runs livekit.rtc's AudioProcessingModule, the playback jitter buffer, earcons and
device reopen with backoff. Uses livekit.rtc only for DSP objects (AudioFrame, APM, AudioResampler), never
the network.
"""
