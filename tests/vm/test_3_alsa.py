"""Plain ALSA on the loopback card, no sound server anywhere: a second reader of the mic beside the daemon (the
installer's dsnoop), and a `hw:` mic another process holds, named, then captured from once it is free."""

from __future__ import annotations

import numpy as np
import pytest

from tests.polling import wait_for
from tests.vm.appliance import UNIT, Appliance, from_guest_mono, to_guest
from tests.wire.signals import correlation, find_lag

pytestmark = pytest.mark.vm

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
        status = appliance.wait_state("failed", timeout=60)
        assert status["reason"] == "mic-unavailable"
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
