"""The device's identity when none is configured: made once per device, kept in its state directory — not the
machine id, which every card written from one image shares."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from device.config.schema import Config, DaemonConfig, LiveKitConfig
from device.daemon.app import App
from device.daemon.identity import kept_identity
from device.session.tokens import device_identity


@pytest.fixture(autouse=True)
def _no_notify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)


def device(state: Path, identity: str | None = None) -> tuple[App, Config]:
    """One start of the daemon of a device whose state directory is `state`."""
    config = Config(livekit=LiveKitConfig(identity=identity), daemon=DaemonConfig(state_dir=str(state)))
    return App(config, "config.yaml"), config


def identity_at_start(state: Path, identity: str | None = None) -> str:
    app, config = device(state, identity)
    return app.identity(config)


def test_two_devices_cloned_from_one_image_get_different_identities_each_kept_across_restarts(tmp_path: Path
                                                                                             ) -> None:
    # both "devices" run here, on one /etc/machine-id: what cards written from one image share
    kitchen, hall = identity_at_start(tmp_path / "kitchen"), identity_at_start(tmp_path / "hall")
    assert kitchen != hall
    assert device_identity() not in (kitchen, hall)  # not the machine id's
    assert re.fullmatch(r"device-[0-9a-f]{12}", kitchen)
    assert identity_at_start(tmp_path / "kitchen") == kitchen  # a restart (a reboot: the same directory)
    assert (tmp_path / "kitchen" / "identity").read_text() == kitchen + "\n"


def test_a_reload_keeps_the_identity(tmp_path: Path) -> None:
    app, config = device(tmp_path)
    first = app.identity(config)
    (tmp_path / "identity").unlink()  # read once: not even a file removed behind its back changes it
    assert app.identity(config) == first


def test_a_configured_identity_wins_and_nothing_is_made(tmp_path: Path) -> None:
    assert identity_at_start(tmp_path, identity="kiosk-lobby") == "kiosk-lobby"
    assert not (tmp_path / "identity").exists()


def test_without_a_state_directory_the_machine_id_derivation_with_a_warning(caplog: pytest.LogCaptureFixture
                                                                            ) -> None:
    assert kept_identity(None, derived=lambda: "device-derived") == "device-derived"
    [line] = [r.getMessage() for r in caplog.records]
    assert "no state directory" in line and "daemon.state_dir" in line


def test_a_state_directory_that_cannot_be_written_falls_back_without_a_new_identity_each_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / ".identity.tmp").mkdir()  # where it is written first (root writes anywhere a mode would forbid)
    assert kept_identity(tmp_path, derived=lambda: "device-derived") == "device-derived"
    assert "not written" in caplog.text and not (tmp_path / "identity").exists()


def test_an_identity_file_that_cannot_be_read_is_not_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                              ) -> None:
    (tmp_path / "identity").mkdir()
    assert kept_identity(tmp_path, derived=lambda: "device-derived") == "device-derived"
    assert "not read" in caplog.text and (tmp_path / "identity").is_dir()


def test_an_identity_file_that_holds_no_identity_is_replaced_with_a_new_one(tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "identity").write_text("not an identity!\n")
    made = kept_identity(tmp_path, new=lambda: "device-0123456789ab")
    assert made == "device-0123456789ab" == (tmp_path / "identity").read_text().strip()
    assert "holds no identity" in caplog.text
