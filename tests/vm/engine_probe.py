"""VM test equipment: voice-device's own AudioEngine on plain ALSA, beside the running daemon.

Run in the guest as the voice-device user with the installed venv's python (the test writes it to the guest):
`engine_probe.py CONFIG --say MOUTH.raw --play REPLY.raw --out DIR --seconds N`. It builds the engine from the
installed config's audio section (at 48 kHz with no processing, so what it records compares sample for sample
with what was played), starts it on the ALSA `default` the installer set up (dsnoop for the mic, dmix for the
speaker, while the daemon holds both), then: an `arecord` on the loopback's other side (hw:Loopback,1) is the
ear, an `aplay` of MOUTH there is the person speaking into the mic, and the engine's player plays REPLY. After
N seconds DIR holds mic.raw (the engine's processed ring, mono) and ear.raw (stereo, what the speaker played),
and one JSON line on stdout says what the engine counted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from device.audio.engine import AudioEngine
from device.config import load_config

HW = ["-D", "hw:Loopback,1,0", "-f", "S16_LE", "-r", "48000", "-c", "2", "-t", "raw", "-q"]


async def probe(args: argparse.Namespace) -> dict[str, object]:
    audio = dataclasses.replace(load_config(args.config).audio, sample_rate=48000, echo_cancellation=False,
                                noise_suppression=False, high_pass_filter=False, auto_gain_control=False,
                                volume=1.0)
    engine = AudioEngine(audio)
    started = time.monotonic()
    await engine.start()
    opened_s = time.monotonic() - started
    out = Path(args.out)
    ear = subprocess.Popen(["arecord", *HW, "-d", str(int(args.seconds) + 2), str(out / "ear.raw")],
                           stdin=subprocess.DEVNULL)
    chunks: list[np.ndarray] = []
    try:
        reader = engine.reader(engine.now_index())
        mouth = subprocess.Popen(["aplay", *HW, args.say], stdin=subprocess.DEVNULL)
        reply = np.fromfile(args.play, dtype="<i2")
        engine.player.push_samples(reply, 48000)
        engine.player.end()
        want = int(args.seconds * engine.sample_rate)
        got = 0
        async with asyncio.timeout(args.seconds * 3 + 30):
            async for _first, chunk in reader:
                chunks.append(chunk.copy())
                got += chunk.shape[0]
                if got >= want:
                    break
        reader.close()
        mouth.wait(timeout=60)
        stats = engine.stats()
    finally:
        await engine.stop()
        ear.wait(timeout=args.seconds + 60)
    np.concatenate(chunks).astype("<i2").tofile(out / "mic.raw")
    return {"opened_s": round(opened_s, 2), "mic_open": True, "frames_captured": stats.frames_captured,
            "samples_played": stats.samples_played, "underruns": stats.underruns,
            "input_overflows": stats.input_overflows, "lost_samples": stats.lost_samples,
            "input_device": engine.input_device.name if engine.input_device else None,
            "output_device": engine.output_device.name if engine.output_device else None}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("--say", required=True)
    p.add_argument("--play", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=10.0)
    print(json.dumps(asyncio.run(probe(p.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
