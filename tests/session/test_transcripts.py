"""What the user and the agent say stays out of the journal: final transcripts are kept for status (in memory)
and logged only when a developer turns `logging.transcripts` on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from device.config import load_config
from device.config.schema import Config, LoggingConfig
from device.session.status import TranscriptLine
from tests.session.conftest import make_config
from tests.session.fakes import FakeTextReader

SAID = "my door code is 4711"


async def _hear_final_transcript(rig) -> None:
    await rig.start()
    handler = rig.room.text_handlers["lk.transcription"]
    handler(FakeTextReader(SAID, {"lk.transcription_final": "true"}), "device-test")
    await rig.settle()


async def test_by_default_a_final_transcript_leaves_no_trace_in_the_log_but_status_keeps_it(make_rig, caplog):
    rig = make_rig()
    with caplog.at_level(logging.DEBUG):
        await _hear_final_transcript(rig)
    assert all(SAID not in r.getMessage() and "4711" not in str(r.args) for r in caplog.records)
    assert rig.sup.status().transcripts == (TranscriptLine("device-test", SAID),)


async def test_with_logging_transcripts_on_a_final_transcript_is_logged(make_rig, caplog):
    base = make_config()
    rig = make_rig(config=Config(livekit=base.livekit, session=base.session,
                                 logging=LoggingConfig(transcripts=True)))
    with caplog.at_level(logging.INFO, logger="device.session.text"):
        await _hear_final_transcript(rig)
    assert [r.getMessage() for r in caplog.records if r.name == "device.session.text"] == [
        f"transcript speaker=device-test text={SAID!r}"]
    assert rig.sup.status().transcripts == (TranscriptLine("device-test", SAID),)


@pytest.mark.parametrize("profile", ["kiosk", "smart-speaker", "appliance", "demo"])
def test_the_example_profiles_keep_transcripts_out_of_the_log(profile: str) -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "config" / f"{profile}.yaml", env={})
    assert config.logging.transcripts is False
