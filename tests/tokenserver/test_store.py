"""The credential and the store that keeps only its hash: shape, rotation, revocation, the file's mode."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from voice_device_tokens import credential as cred
from voice_device_tokens.store import Store, StoreError


def test_a_credential_names_its_device_and_carries_256_random_bits_that_the_store_never_keeps(tmp_path: Path) -> None:
    store = Store(tmp_path / "devices.sqlite")
    credential, device = store.enrol("kiosk-1", "kiosks")
    text = credential.text()
    assert text.startswith("vdc1.kiosk-1.") and len(text.split(".")[2]) == 43
    assert cred.parse(text) == credential and cred.matches(credential, device.hashed)
    assert credential.secret not in repr(credential) and credential.secret not in repr(device)
    store.close()
    assert credential.secret.encode() not in b"".join(p.read_bytes() for p in tmp_path.iterdir())


@pytest.mark.parametrize("text", ["", "garbage", "vdc1.kiosk-1", "vdc2.kiosk-1." + "A" * 43, "vdc1.kiosk-1." + "A" * 42,
                                  "vdc1.bad id." + "A" * 43, "vdc1.a.b." + "A" * 43])
def test_anything_without_a_credentials_shape_is_no_credential(text: str) -> None:
    assert cred.parse(text) is None


def test_re_enrolment_rotates_the_credential_and_lifts_a_revocation(tmp_path: Path) -> None:
    store = Store(tmp_path / "devices.sqlite")
    first, _ = store.enrol("kiosk-1", "kiosks")
    revoked = store.revoke("kiosk-1")
    assert revoked is not None and revoked.revoked
    second, device = store.enrol("kiosk-1", "speakers")
    assert device.generation == 2 and not device.revoked and device.group == "speakers"
    assert cred.matches(second, device.hashed) and not cred.matches(first, device.hashed)
    assert store.revoke("nobody") is None


def test_a_second_process_sees_a_change_at_once(tmp_path: Path) -> None:
    reader, writer = Store(tmp_path / "devices.sqlite"), Store(tmp_path / "devices.sqlite")
    writer.enrol("kiosk-1", "kiosks")
    assert reader.find("kiosk-1") is not None
    writer.revoke("kiosk-1")
    assert reader.find("kiosk-1").revoked


def test_the_store_is_private_to_its_owner(tmp_path: Path) -> None:
    Store(tmp_path / "devices.sqlite").enrol("kiosk-1", "kiosks")
    assert stat.S_IMODE((tmp_path / "devices.sqlite").stat().st_mode) == 0o600


def test_a_store_that_cannot_be_opened_is_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot be opened"):
        Store(tmp_path / "no-such-dir" / "devices.sqlite")


@pytest.mark.parametrize("device", ["", "-x", "a.b", "a b", "é", "x" * 65])
def test_an_unsafe_device_id_is_refused(tmp_path: Path, device: str) -> None:
    with pytest.raises(ValueError, match="not valid"):
        Store(tmp_path / "devices.sqlite").enrol(device, "kiosks")
