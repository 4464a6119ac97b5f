"""The speaker volume on an ALSA mixer control: amixer's output parsed, and the real ALSA control interface of the
rig (alsa-plugins' `ctl.pulse`: `amixer -D pulse` moves the rig's sink volume, which `pactl` reads back)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from device.audio.mixer import Amixer, MixerError, attach_mixer, parse_level, playback_controls
from device.audio.player import Player
from tests.programs import need

SGET_MONO = """Simple mixer control 'Master',0
  Capabilities: pvolume pvolume-joined pswitch pswitch-joined
  Playback channels: Mono
  Limits: Playback 0 - 65536
  Mono: Playback 32768 [50%] [on]
"""
SGET_STEREO_DB = """Simple mixer control 'Speaker',0
  Capabilities: pvolume pswitch
  Playback channels: Front Left - Front Right
  Limits: Playback 0 - 127
  Mono:
  Front Left: Playback 101 [80%] [-7.50dB] [on]
  Front Right: Playback 89 [70%] [-13.50dB] [on]
"""
SCONTENTS = """Simple mixer control 'Capture',0
  Capabilities: cvolume cvolume-joined cswitch cswitch-joined
  Capture channels: Mono
  Limits: Capture 0 - 65536
  Mono: Capture 65536 [100%] [on]
Simple mixer control 'Headphone',0
  Capabilities: pswitch
  Playback channels: Mono
  Mono: Playback [on]
Simple mixer control 'Speaker',1
  Capabilities: pvolume pswitch
  Playback channels: Mono
  Limits: Playback 0 - 127
  Mono: Playback 127 [100%] [0.00dB] [on]
Simple mixer control 'PCM',0
  Capabilities: pvolume
  Playback channels: Mono
  Limits: Playback 0 - 255
  Mono: Playback 255 [100%]
"""


def test_the_level_is_the_mean_of_the_playback_channels_and_none_without_a_playback_volume() -> None:
    assert parse_level(SGET_MONO) == 0.5
    assert parse_level(SGET_STEREO_DB) == pytest.approx(0.75)
    assert parse_level(SCONTENTS.split("Simple mixer control 'Headphone'")[0]) is None  # capture only
    assert parse_level("") is None


def test_the_controls_with_a_playback_volume_in_order_an_index_kept_in_amixers_form() -> None:
    assert playback_controls(SCONTENTS) == ["'Speaker',1", "PCM"]
    assert playback_controls("") == []


# ---- the rig's real ALSA control interface ------------------------------------------------------------------


def sink_percent(audio_rig) -> int:
    return int(re.findall(r"(\d+)%", audio_rig.pactl("get-sink-volume", "spk"))[0])


@pytest.fixture
def rig_volume(audio_rig) -> Iterator[object]:
    """The rig's sink at 100 % again after the test: the other tests compare levels of what it plays."""
    need("amixer")
    audio_rig.pactl("set-sink-volume", "spk", "100%")
    try:
        yield audio_rig
    finally:
        audio_rig.pactl("set-sink-volume", "spk", "100%")


async def test_the_player_hands_its_volume_to_the_mixer_and_plays_unscaled(rig_volume) -> None:
    rig_volume.pactl("set-sink-volume", "spk", "40%")
    player = Player(48000, jitter_ms=20, volume=0.8)
    mixer = await attach_mixer(player, "Master", "pulse")
    assert mixer is not None and mixer.control == "Master"
    assert player.volume == pytest.approx(0.4)  # the level the control had is kept, not audio.volume's 0.8
    player.volume = 0.7  # what the buttons and the agent's device.set_volume do
    await mixer.settled()
    assert sink_percent(rig_volume) == 70
    assert mixer.applied == pytest.approx(0.7)
    player.volume = player.volume - 0.1
    player.volume = player.volume - 0.1  # faster than amixer answers: the latest wins
    await mixer.settled()
    assert sink_percent(rig_volume) == 50


async def test_auto_picks_the_first_playback_control(rig_volume) -> None:
    player = Player(48000, jitter_ms=20, volume=0.8)
    mixer = await attach_mixer(player, "auto", "pulse")
    assert mixer is not None and mixer.control == "Master"  # not 'Capture', which has no playback volume


async def test_a_control_that_is_not_there_leaves_the_volume_in_software_with_one_sentence(rig_volume, caplog) -> None:
    player = Player(48000, jitter_ms=20, volume=0.8)
    with caplog.at_level(logging.WARNING, logger="voice-device.audio"):
        assert await attach_mixer(player, "Speaker", "pulse") is None
        assert await attach_mixer(player, "Capture", "pulse") is None  # there, but no playback volume
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and all("speaker volume stays in software" in s for s in said)
    assert "amixer -D pulse scontrols" in said[0] and "'Capture'" in said[1]
    player.volume = 0.5
    assert sink_percent(rig_volume) == 100  # nothing moved the mixer
    assert player.volume == 0.5


async def test_no_amixer_is_a_sentence_saying_what_to_install(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MixerError, match="apt install alsa-utils"):
        await Amixer("default").run("scontrols")


async def test_a_mixer_that_fails_later_is_said_once_and_tried_again(rig_volume, caplog, monkeypatch) -> None:
    player = Player(48000, jitter_ms=20, volume=0.8)
    mixer = await attach_mixer(player, "Master", "pulse")
    assert mixer is not None
    monkeypatch.setenv("PULSE_SERVER", "unix:/nonexistent/native")  # the sound server gone
    with caplog.at_level(logging.WARNING, logger="voice-device.audio"):
        for level in (0.3, 0.4):
            player.volume = level
            await mixer.settled()
    assert [r.getMessage().startswith("volume not set on the mixer") for r in caplog.records] == [True]
    monkeypatch.setenv("PULSE_SERVER", rig_volume.pulse_server)
    player.volume = 0.6
    await mixer.settled()
    assert sink_percent(rig_volume) == 60
