"""The peers of an active session: plain LiveKit clients on the same stub, the same virtual mic, the same speech.

    python -m benchmarks.peers --role mediadevices|platformaudio --url URL --token TOKEN   (started by the bench)

Each is what a hello-wakeword-style client does once it is talking to the agent, with nothing of ours in it:
- `mediadevices`: `rtc.MediaDevices` — `open_input()` (sounddevice callback → APM → `AudioSource`) published as
  the microphone, `open_output()` playing the agent's track through its mixer (and feeding the APM's reverse
  stream). The DSP matches the daemon's configuration (echo cancellation, noise suppression, high-pass; AGC as
  configured), so both do the same processing; at its own 48 kHz, or `--rate` (the daemon's 16 kHz).
- `platformaudio`: `rtc.PlatformAudio` — WebRTC's own audio device module captures, processes (its AEC, NS, AGC)
  and plays the agent by itself; the client only publishes its source.
The client prints `ready` once the agent's `lk.agent.state` is `listening` and then just keeps the session
up until it is terminated; the bench measures its CPU (all threads, /proc) over the same window, with the same
speech playing into the mic, as it measures the daemon's.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

AGENT_STATE = "lk.agent.state"


async def _agent_listening(room: Any) -> None:
    """Until some remote participant says `listening` in its `lk.agent.state`."""
    done = asyncio.get_running_loop().create_future()

    def check(*_: Any) -> None:
        listening = any(p.attributes.get(AGENT_STATE) == "listening" for p in room.remote_participants.values())
        if listening and not done.done():
            done.set_result(None)

    room.on("participant_attributes_changed", check)
    room.on("participant_connected", check)
    check()
    await done


async def mediadevices(url: str, token: str, aec: bool, ns: bool, hpf: bool, agc: bool, rate: int) -> None:
    from livekit import rtc

    room = rtc.Room()
    devices = rtc.MediaDevices(input_sample_rate=rate, output_sample_rate=rate)
    mic = devices.open_input(enable_aec=aec, noise_suppression=ns, high_pass_filter=hpf, auto_gain_control=agc)
    player = devices.open_output()
    started = False

    async def play(track: rtc.Track) -> None:
        nonlocal started
        await player.add_track(track)
        if not started:
            started = True
            await player.start()

    room.on("track_subscribed", lambda track, *_: track.kind == rtc.TrackKind.KIND_AUDIO
            and asyncio.ensure_future(play(track)))
    await room.connect(url, token)
    track = rtc.LocalAudioTrack.create_audio_track("microphone", mic.source)
    await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    await _run(room, [player.aclose, mic.aclose])


async def platformaudio(url: str, token: str) -> None:
    from livekit import rtc

    platform = rtc.PlatformAudio()
    source = platform.create_audio_source()
    room = rtc.Room()
    await room.connect(url, token)
    track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
    await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))

    async def close() -> None:
        source.close()
        platform.close()

    await _run(room, [close])


async def _run(room: Any, closers: list[Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await asyncio.wait_for(_agent_listening(room), 30)
    print("ready", flush=True)
    await stop.wait()
    for close in closers:
        await close()
    await room.disconnect()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--role", choices=("mediadevices", "platformaudio"), required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--dsp", default="aec,ns,hpf", help="MediaDevices processing: any of aec,ns,hpf,agc")
    p.add_argument("--rate", type=int, default=48000, help="MediaDevices sample rate (default 48000, its own)")
    args = p.parse_args(argv)
    dsp = set(args.dsp.split(",")) if args.dsp else set()
    if args.role == "mediadevices":
        run = mediadevices(args.url, args.token, "aec" in dsp, "ns" in dsp, "hpf" in dsp, "agc" in dsp, args.rate)
    else:
        run = platformaudio(args.url, args.token)
    asyncio.run(run)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
