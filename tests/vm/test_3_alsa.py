"""Plain ALSA on the loopback card, no sound server anywhere: voice-device's audio engine captures speech played
into the card and plays speech out of it through the installer's `default` (plug over dsnoop/dmix on hw:) beside
the running daemon; a second reader of the mic beside the daemon; a `hw:` mic another process holds, named, then
captured from once it is free."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from tests.polling import wait_for
from tests.vm.appliance import UNIT, Appliance, from_guest_mono, from_guest_stereo, to_guest
from tests.wire.signals import RATE, correlation, find_lag

pytestmark = pytest.mark.vm

PROBE = Path(__file__).with_name("engine_probe.py")
WINDOW = RATE // 10  # 100 ms


def best_match(ref: np.ndarray, recording: np.ndarray, around: int, reach: int) -> tuple[int, float]:
    """The lag within `around` ± `reach` at which `ref` best matches `recording`, and the normalised correlation."""
    lo, hi = max(0, around - reach), min(len(recording) - len(ref), around + reach)
    if hi < lo:
        return around, 0.0
    seg = recording[lo: hi + len(ref)].astype(np.float64)
    r = ref.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(seg) + len(r))))
    xc = np.fft.irfft(np.fft.rfft(seg, n) * np.conj(np.fft.rfft(r, n)), n)[: hi - lo + 1]
    energy = np.concatenate([[0.0], np.cumsum(seg ** 2)])
    local = np.sqrt(np.maximum(energy[len(r):len(r) + hi - lo + 1] - energy[: hi - lo + 1], 1e-9))
    scores = xc / (local * np.sqrt(np.sum(r ** 2)) + 1e-9)
    best = int(np.argmax(scores))
    return lo + best, float(scores[best])


def windows_matching(source: np.ndarray, recording: np.ndarray) -> tuple[int, float, float]:
    """(lag, median correlation of the 100 ms windows where the source speaks, share of them above 0.9). Each
    window is found again within 50 ms of where the previous one was: a dropout under emulation (a lost period
    shifts what follows) spoils its own window, not the rest."""
    lag = find_lag(source, recording)
    scores, at = [], lag
    for start in range(0, len(source) - WINDOW, WINDOW):
        ref = source[start: start + WINDOW]
        if np.sqrt(np.mean(ref.astype(np.float64) ** 2)) < 300:
            continue
        found, score = best_match(ref, recording, at + start, RATE // 20)
        scores.append(score)
        if score > 0.9:
            at = found - start
    assert scores, (lag, len(recording))
    return lag, float(np.median(scores)), float(np.mean(np.array(scores) > 0.9))


def test_the_engine_captures_and_plays_speech_through_the_installers_default_beside_the_daemon(
        appliance: Appliance, vm_speech: dict[str, np.ndarray]) -> None:
    """voice-device's AudioEngine (the daemon's code, run by a probe as the voice-device user): speech played into
    the loopback card comes out of its processed ring; speech it plays comes out of the card's other side. The
    daemon holds the same mic and speaker meanwhile (dsnoop, dmix)."""
    appliance.wait_active()
    to_guest(appliance, "/root/utterance.raw", vm_speech["utterance"])
    reply = vm_speech["reply"].astype("<i2")
    appliance.machine.write("/root/reply.b64", base64.b64encode(reply.tobytes()).decode())
    appliance.machine.write("/tmp/engine_probe.py", PROBE.read_text())
    seconds = max(len(vm_speech["utterance"]), len(reply)) / RATE + 3
    out = appliance.sh("base64 -d /root/reply.b64 > /tmp/reply.raw && cp /root/utterance.raw /tmp/utterance.raw && "
                       "rm -rf /tmp/probe && mkdir /tmp/probe && chown voice-device /tmp/probe /tmp/*.raw && "
                       "cd /tmp && runuser -u voice-device -- /opt/voice-device/venv/bin/python /tmp/engine_probe.py "
                       f"/etc/voice-device/config.yaml --say /tmp/utterance.raw --play /tmp/reply.raw --out /tmp/probe "
                       f"--seconds {seconds:.1f}", timeout=300)
    counted = json.loads(out.strip().splitlines()[-1])
    print(f"\nengine probe: {counted}")
    mic = from_guest_mono(appliance, "/tmp/probe/mic.raw")
    ear = from_guest_stereo(appliance, "/tmp/probe/ear.raw")[:, 0]
    lag, heard, share = windows_matching(vm_speech["utterance"], mic)
    print(f"captured: lag {lag / RATE * 1000:.0f} ms, median window correlation {heard:.3f}, {share:.0%} above 0.9")
    lag_out, played, share_out = windows_matching(reply, ear)
    print(f"played: lag {lag_out / RATE * 1000:.0f} ms, median window correlation {played:.3f}, "
          f"{share_out:.0%} above 0.9; underruns {counted['underruns']}")
    assert "voice_device_mic" in counted["input_device"] or counted["input_device"] == "default", counted
    assert heard > 0.9 and share > 0.8
    assert played > 0.9 and share_out > 0.8
    assert appliance.status()["metrics"]["mic_open"] is True  # the daemon kept its mic meanwhile


def test_no_sound_server_is_installed_or_running(appliance: Appliance) -> None:
    out = appliance.sh("dpkg-query -W -f='${Package} ${Status}\\n' pulseaudio pipewire 2>&1 || true; "
                       "pgrep -l 'pulseaudio|pipewire' || echo none-running")
    assert "install ok installed" not in out and "none-running" in out, out
    active = appliance.sh("ls /etc/alsa/conf.d/*.conf").split()
    assert "/etc/alsa/conf.d/60-voice-device.conf" in active
    # 50-pulseaudio.conf (libasound2-plugins) only defines a `pulse` device; 99-pulse*/pipewire take the default
    assert [f for f in active if "99-pulse" in f or "pipewire" in f] == [], active


def test_a_second_reader_records_the_mic_while_the_daemon_has_it(appliance: Appliance,
                                                                 vm_speech: dict[str, np.ndarray]) -> None:
    """A user of the audio group records ALSA's default device while the daemon captures from it."""
    appliance.wait_active()
    to_guest(appliance, "/root/utterance.raw", vm_speech["utterance"])
    appliance.sh("id tester >/dev/null 2>&1 || useradd -m -G audio tester")
    before = appliance.status()["metrics"]
    cursor = appliance.cursor()
    r = appliance.machine.run(["bash", "-c",
                               "runuser -u tester -- arecord -q -D default -f S16_LE -r 48000 -c 1 -d 6 -t raw "
                               "/tmp/second.raw & sleep 1; aplay -q -D hw:Loopback,1,0 -f S16_LE -r 48000 -c 2 "
                               "-t raw /root/utterance.raw; wait %1"], timeout=90)
    assert r.rc == 0, r.stderr
    second = from_guest_mono(appliance, "/tmp/second.raw")
    source = vm_speech["utterance"]
    lag = find_lag(source, second)
    score = correlation(source[: len(second) - lag], second[lag: lag + len(source)])
    print(f"\nsecond reader heard the utterance, correlation {score:.3f}")
    assert score > 0.9
    after = appliance.status()["metrics"]
    assert after["mic_open"] is True and after["audio_frames_captured"] > before["audio_frames_captured"]
    assert after["audio_input_reopens"] == before["audio_input_reopens"]
    assert "audio input lost" not in appliance.journal(cursor)


def test_a_held_hw_mic_is_named_with_its_holder_then_captured_from_once_freed(appliance: Appliance) -> None:
    """The daemon pointed at `hw:0,0` (plain ALSA, no sharing) while arecord holds it: one line names the holder,
    the device shows failed: mic-unavailable, and the daemon captures from the device as soon as it is free."""
    appliance.machine.run(["systemctl", "stop", UNIT], timeout=60).check()  # its dsnoop holds the card now
    holder = 0
    try:
        holder = int(appliance.sh("(arecord -q -D hw:Loopback,0 -f S16_LE -r 48000 -c 2 -d 600 /dev/null "
                                  "</dev/null >/dev/null 2>&1 & echo $!)").strip())
        held = appliance.original_config.replace("  input_device: default\n", '  input_device: "hw:0,0"\n')
        assert held != appliance.original_config
        appliance.write_config(held)
        cursor = appliance.cursor()
        appliance.machine.run(["systemctl", "start", UNIT], timeout=180).check()
        line = appliance.wait_journal("is busy", cursor, 120)
        busy = next(x for x in line.splitlines() if "is busy" in x)
        print(f"\n{busy}")
        assert f"held by process {holder}" in busy and "hw:0,0" in busy
        assert line.count("audio input 'hw:0,0' is busy:") == 1  # said once, not at every retry
        assert appliance.wait_state("failed", timeout=60) == "failed: mic-unavailable"
        appliance.sh(f"kill {holder}")
        restored = appliance.wait_journal("audio input restored", cursor, 120)
        assert "audio input open device='Loopback: PCM (hw:0,0)'" in restored
        appliance.wait_state("idle", timeout=60)
        first = appliance.status()["metrics"]["audio_frames_captured"]
        wait_for(lambda: appliance.status()["metrics"]["audio_frames_captured"] > first, 60, "frames from hw:0,0")
    finally:
        if holder:
            appliance.sh(f"kill {holder} 2>/dev/null || true")
        appliance.write_config(appliance.original_config)
        if appliance.props()["ActiveState"] == "active":
            appliance.reload()  # back to the shared default without a restart
        else:
            appliance.restart()
