"""The saved state: where it lives, and that a bad file or a read-only directory never stops the device."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.config.schema import DaemonConfig
from device.daemon.saved import Saved, load, save, state_path


def test_the_state_lives_in_the_configured_dir_else_systemds_state_directory_else_nowhere(tmp_path: Path) -> None:
    assert state_path(DaemonConfig(state_dir=str(tmp_path)), env={}) == tmp_path / "state.json"
    assert state_path(DaemonConfig(), env={"STATE_DIRECTORY": "/var/lib/voice-device:/x"}) == Path(
        "/var/lib/voice-device/state.json")
    assert state_path(DaemonConfig(), env={}) is None


def test_saved_mute_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    assert load(path) == Saved(muted=False)  # nothing saved yet
    save(path, Saved(muted=True))
    assert load(path) == Saved(muted=True)


@pytest.mark.parametrize("text", ["{not json", '["muted"]', '{"muted": "yes"}'])
def test_an_unreadable_state_is_reported_and_means_not_muted(tmp_path: Path, text: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    assert load(path) == Saved(muted=False)
    assert ("unreadable" in caplog.text) == text.startswith("{not")


def test_a_state_that_cannot_be_written_is_reported_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                              ) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    save(blocker / "state.json", Saved(muted=True))  # its directory is a file
    assert "not written" in caplog.text
