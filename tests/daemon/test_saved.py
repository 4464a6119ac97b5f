"""The saved state: where it lives, that a bad file fails closed (muted) and that a read-only directory never stops
the device."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from device.config.schema import Config, DaemonConfig
from device.daemon.app import App
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


BAD_FILES = {
    "not JSON": b"{not json",
    "cut short by a power cut": b'{"muted": tr',
    "not UTF-8": b"\xff\xfe{}",
    "not an object": b'["muted"]',
    "mute not a boolean": b'{"muted": "yes"}',
    "no mute": b'{"planned_restart_boot": "", "planned_restart_at": 0}',
    "empty": b"",
}


@pytest.mark.parametrize("content", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_state_file_that_says_nothing_trustworthy_about_mute_starts_muted_and_says_why(
        tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    assert load(path).muted is True  # fail closed: mute's last value is unknown
    [line] = [r.getMessage() for r in caplog.records if r.name == "device.daemon.saved"]
    assert f"path={path}" in line and "starting MUTED" in line and "voice-device ctl unmute" in line


def test_a_state_path_that_cannot_be_read_starts_muted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json"
    path.mkdir()  # read_text raises IsADirectoryError (root reads any file, so a mode cannot make one unreadable)
    assert load(path).muted is True
    assert "Is a directory" in caplog.text and "starting MUTED" in caplog.text


def test_no_state_file_is_a_first_boot_not_muted_and_silent(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    assert load(tmp_path / "state.json") == Saved(muted=False)
    assert load(None) == Saved(muted=False)
    assert caplog.records == []


def test_the_volume_set_reads_back_with_mute(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save(path, Saved(muted=True, volume=0.35))
    assert load(path) == Saved(muted=True, volume=0.35)
    save(path, Saved(muted=False, volume=0.0))  # silent is a volume too, not "never set"
    assert load(path) == Saved(muted=False, volume=0.0)


def test_a_file_from_before_the_volume_was_kept_reads_as_never_set(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"muted": true, "planned_restart_boot": "", "planned_restart_at": 0.0}')
    assert load(path) == Saved(muted=True, volume=None)


@pytest.mark.parametrize("volume", ['"loud"', "1.5", "-0.1", "true", "NaN"])
def test_a_saved_volume_out_of_range_is_ignored_and_said_mute_still_read(
        tmp_path: Path, volume: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json"
    path.write_text(f'{{"muted": false, "volume": {volume}}}')
    assert load(path) == Saved(muted=False, volume=None)
    assert "saved volume ignored" in caplog.text


def test_unmuting_rewrites_a_bad_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"{not json")
    save(path, replace(load(path), muted=False))  # what the daemon does on `ctl unmute`
    assert load(path) == Saved(muted=False)


@pytest.mark.parametrize(("content", "boot_muted", "muted"), [
    (b"{not json", False, True), (None, False, False), (b'{"muted": false}', True, True),
    (b'{"muted": true}', False, True)])
def test_the_daemon_starts_muted_on_a_bad_state_file_or_boot_muted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes | None, boot_muted: bool, muted: bool) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    if content is not None:
        (tmp_path / "state.json").write_bytes(content)
    config = Config(daemon=DaemonConfig(state_dir=str(tmp_path), boot_muted=boot_muted))
    assert App(config, "config.yaml").muted is muted


def test_a_state_that_cannot_be_written_is_reported_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                              ) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    save(blocker / "state.json", Saved(muted=True))  # its directory is a file
    assert "not written" in caplog.text
