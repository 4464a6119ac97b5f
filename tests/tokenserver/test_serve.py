"""`voice-device-tokens` as an operator runs it: the enrolment commands, and `serve` processes — two at once on one
store, over TLS, and what they write to their log (never a credential, a token or the secret)."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.tokenserver.harness import API_SECRET, Node, enrol, serving, tokens, write_config

BODY = {"room_name": "voice-device-0001", "participant_identity": "kiosk-1"}


async def post(url: str, credential: str, ssl_context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.post(
            url + "/voice-device", json=BODY, headers={"Authorization": f"Bearer {credential}"},
            ssl=ssl_context if ssl_context is not None else True) as resp:
        return resp.status, await resp.json()


def test_enrol_prints_only_the_env_file_lines_and_again_rotates(tmp_path: Path) -> None:
    store = str(tmp_path / "devices.sqlite")
    r = tokens("enrol", "--store", store, "--device", "kiosk-1", "--group", "kiosks",
               "--endpoint", "https://tokens.example.com/voice-device")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "VOICE_DEVICE_TOKEN_ENDPOINT=https://tokens.example.com/voice-device"
    assert lines[1].startswith("VOICE_DEVICE_CREDENTIAL=vdc1.kiosk-1.") and len(lines) == 2
    again = tokens("enrol", "--store", store, "--device", "kiosk-1", "--group", "kiosks")
    assert again.stdout.startswith("VOICE_DEVICE_CREDENTIAL=") and again.stdout != lines[1] + "\n"
    assert "previous one no longer works" in again.stderr
    listed = tokens("list", "--store", store)
    assert listed.returncode == 0 and "kiosk-1\tkiosks\tactive" in listed.stdout and "#2" in listed.stdout
    assert lines[1].split("=", 1)[1] not in listed.stdout + listed.stderr


def test_enrolment_mistakes_are_sentences(tmp_path: Path) -> None:
    store = str(tmp_path / "devices.sqlite")
    bad = tokens("enrol", "--store", store, "--device", "kiosk 1", "--group", "kiosks")
    assert bad.returncode == 2 and "'kiosk 1' is not a valid device id" in bad.stderr
    unknown = tokens("revoke", "--store", store, "--device", "kiosk-9")
    assert unknown.returncode == 1 and "no device kiosk-9 is enrolled" in unknown.stderr
    nowhere = tokens("list", "--store", str(tmp_path / "missing" / "devices.sqlite"))
    assert nowhere.returncode == 1 and "cannot be opened" in nowhere.stderr and "Traceback" not in nowhere.stderr


def test_a_bad_configuration_stops_serve_with_the_key_to_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "devices.sqlite", ["lk.example.com"])
    r = tokens("serve", "--config", str(config))
    assert r.returncode == 2 and "livekit.nodes[0] must be a LiveKit URL" in r.stderr and "Traceback" not in r.stderr


async def test_two_instances_share_one_store_and_a_revocation_reaches_both_at_once(tmp_path: Path) -> None:
    node = await Node().start()
    store = tmp_path / "devices.sqlite"
    credential = enrol(store, "kiosk-1")
    config = write_config(tmp_path, store, [node.url])
    async with serving(config) as one, serving(config) as two:
        assert one.url != two.url
        assert [(await post(s.url, credential))[0] for s in (one, two)] == [201, 201]
        assert tokens("revoke", "--store", str(store), "--device", "kiosk-1").returncode == 0
        for s in (one, two):
            status, answer = await post(s.url, credential)
            assert status == 401 and "revoked" in answer["error"]
        renewed = enrol(store, "kiosk-1")
        assert [(await post(s.url, renewed))[0] for s in (one, two)] == [201, 201]
        assert [(await post(s.url, credential))[0] for s in (one, two)] == [401, 401]
    await node.stop()


async def test_the_log_names_devices_and_outcomes_but_never_a_credential_a_token_or_the_secret(tmp_path: Path) -> None:
    node = await Node().start()
    store = tmp_path / "devices.sqlite"
    good, revoked = enrol(store, "kiosk-1"), enrol(store, "kiosk-2")
    tokens("revoke", "--store", str(store), "--device", "kiosk-2")
    async with serving(write_config(tmp_path, store, [node.url])) as served:
        status, answer = await post(served.url, good)
        assert status == 201
        for bad in (revoked, good[:-3] + "xyz", "not-a-credential"):
            await post(served.url, bad)
    log = await served.stop()
    assert "outcome=issued status=201 client=127.0.0.1 claimed=kiosk-1 device=kiosk-1" in log
    assert "outcome=revoked status=401" in log and "claimed=kiosk-2" in log and "outcome=bad-credential" in log
    for secret in (good, good.split(".")[2], revoked.split(".")[2], answer["participant_token"], API_SECRET, "eyJ"):
        assert secret not in log
    await node.stop()


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_with_a_certificate_it_serves_https(tmp_path: Path) -> None:
    node = await Node().start()
    store = tmp_path / "devices.sqlite"
    credential = enrol(store, "kiosk-1")
    cert, key = self_signed(tmp_path)
    config = write_config(tmp_path, store, [node.url], tls={"cert": str(cert), "key": str(key)},
                          listen={"host": "localhost", "port": 0})
    async with serving(config) as served:
        assert served.url.startswith("https://")
        port = served.url.rsplit(":", 1)[1]
        status, _ = await post(f"https://localhost:{port}", credential, ssl.create_default_context(cafile=cert))
        assert status == 201
    await node.stop()
