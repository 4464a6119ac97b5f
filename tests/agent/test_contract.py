"""The companion's reading of the device (agent/voice_device_agent/contract.py), without livekit-agents."""

from __future__ import annotations

import json

import pytest

from device import __version__
from device.core.agent_contract import device_attributes
from tests.agent.companion import contract

c = contract()


def test_the_companion_reads_what_the_device_publishes():
    info = c.DeviceInfo.of("device-1", device_attributes("wake_word", __version__))
    assert (info.protocol, info.mode, info.version) == ("1.0", c.DeviceMode.WAKE_WORD, __version__)
    assert info.speaks_protocol and info.compatible and not info.push_to_talk
    assert c.DeviceInfo.of("d", device_attributes("push_to_talk", "x")).push_to_talk


def test_a_participant_without_the_attributes_speaks_no_protocol_and_has_no_mode():
    info = c.DeviceInfo.of("phone", {"something": "else"})
    assert info.protocol is None and info.mode is None and not info.compatible
    assert "publishes no voice-device protocol" in info.describe()


def test_a_mode_the_companion_does_not_know_is_no_mode_and_another_major_version_is_not_compatible():
    info = c.DeviceInfo.of("d", {"voice_device.protocol": "2.3", "voice_device.mode": "telepathy"})
    assert info.mode is None and info.speaks_protocol and not info.compatible
    assert c.DeviceInfo.of("d", {"voice_device.protocol": "1.7"}).compatible  # a newer minor only adds


@pytest.mark.parametrize("volume", [-0.1, 1.01, True])
def test_a_volume_outside_0_to_1_is_refused_before_it_is_sent(volume):
    with pytest.raises(ValueError):
        c.volume_payload(volume)


def test_volume_payload_and_reply_are_the_device_s():
    assert json.loads(c.volume_payload(0.25)) == {"volume": 0.25}
    assert c.parse_volume_reply('{"volume": 0.25}') == 0.25
    with pytest.raises(ValueError):
        c.parse_volume_reply('{"ok": true}')


def test_the_llm_reads_no_transcripts_from_the_status():
    info = c.DeviceInfo.of("d", device_attributes("toggle", "1.2.3"))
    status = {"phase": "connected", "muted": True, "transcripts": [{"speaker": "d", "text": "my PIN is"}],
              "metrics": {"sessions": 3}}
    summary = c.status_summary(json.dumps(status), info)
    assert summary == {"phase": "connected", "muted": True, "mode": "toggle", "device_version": "1.2.3"}
