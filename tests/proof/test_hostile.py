"""Hostile input: any config text, any bytes on the control socket, and secrets that must never be shown.

- The config loader, fed any text or any structure dumped to YAML, returns a Config or raises ConfigError
  whose message names the file (and, where there is one, the line and the key) — never another exception;
  `voice-device check` on such files exits 0 or 2 with one line.
- The REAL daemon's control socket, fed any bytes, answers errors or closes the connection and keeps serving.
- A daemon configured with known secrets, run through failing sessions, never prints them: not in its log,
  not in the status output, not in the status file.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.config import Config, ConfigError, load_config_text
from device.config.schema import Config as Schema
from tests.proof.harness import ROOT, DaemonProcess, TokenEndpoint, base_config, short_dir, wait_until, write_config

NAME = "hostile.yaml"
WHERE = re.compile(r"^hostile\.yaml(:\d+)?: ")


def _load(text: str) -> Config | ConfigError:
    try:
        return load_config_text(text, NAME)
    except ConfigError as e:
        return e


def _check_outcome(text: str) -> None:
    outcome = _load(text)
    if isinstance(outcome, ConfigError):
        message = str(outcome)
        assert WHERE.match(message), message
        assert "\n" not in message, message
        if outcome.key:
            assert f": {outcome.key}: " in message


# ---- the config loader ---------------------------------------------------------------------------------------

# Text that looks like YAML: indentation, the syntax characters, tags, anchors, and the schema's own words.
_words = st.sampled_from(["audio", "controls", "button", "pin", "livekit", "token", "session", "mode", "daemon",
                          "sample_rate", "48000", "true", "null", "~", "-", ":", "?", "!", "!!binary",
                          "!!python/name:os", "!!timestamp", "&a", "*a", "<<", "[", "]", "{", "}", "'", '"', "#",
                          "|", ">", "${X}", "${X:-y}", "2001-13-45", "0x1F", "0o777", ".nan", "-.inf", "1e999",
                          "\t", "\\", "%YAML 1.1", "---", "...", "é", "\x00", "\ufeff"])
_yamlish = st.lists(st.one_of(_words, st.just("\n"), st.just("  "), st.text(max_size=6)), max_size=40).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=200), _yamlish))
def test_any_text_loads_or_is_one_config_error_naming_the_file(text: str) -> None:
    _check_outcome(text)


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                     st.binary(max_size=8), st.dates(), st.datetimes())
_anything = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.one_of(st.text(max_size=10), st.integers(),
                                                                                   st.booleans(), st.none()),
                                                                         inner, max_size=4)), max_leaves=20)


def _schema_keys(cls: type = Schema) -> dict[str, Any]:
    """The schema's real section and key names, so generated structures reach the deep checks."""
    out: dict[str, Any] = {}
    for name, f in cls.__dataclass_fields__.items():  # type: ignore[attr-defined]
        if f.metadata.get("internal"):
            continue
        t = f.type if isinstance(f.type, type) else None
        out[name] = _schema_keys(t) if t is not None and hasattr(t, "__dataclass_fields__") else None
    return out


def _shaped(keys: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    fields = {name: (_shaped(sub) | _anything) if sub else _anything for name, sub in keys.items()}
    return st.fixed_dictionaries({}, optional=fields)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_anything, _shaped(_schema_keys())))
def test_any_structure_dumped_to_yaml_loads_or_is_one_config_error(data: Any) -> None:
    _check_outcome(yaml.dump(data, allow_unicode=True))  # yaml.dump: python tags too, as a careless tool writes


def test_the_check_command_exits_0_or_2_with_one_line_on_hostile_files(tmp_path: Path) -> None:
    samples = ["", "audio: [", "!!python/object/apply:os.system ['true']", "audio:\n  sample_rate: 2001-13-45\n",
               "- 1\n- 2\n", "livekit:\n  token_source: literal\n  token: ${UNSET}\n", "\x00", "&a [*a]"]
    for i, text in enumerate(samples):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(text)
        path.chmod(0o600)
        proc = subprocess.run([sys.executable, "-m", "device", "check", "--config", str(path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
        assert proc.returncode in (0, 2), (text, proc.stderr)
        if proc.returncode == 2:
            assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"voice-device: {path.name}"), proc.stderr
            assert "Traceback" not in proc.stderr


# ---- the control socket of the real daemon -------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_daemon(audio_rig) -> Iterator[DaemonProcess]:
    d = short_dir("vd-h-")
    daemon = DaemonProcess(write_config(d / "config.yaml", base_config(d)), pulse_server=audio_rig.pulse_server)
    try:
        daemon.wait_ready()
        yield daemon
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.close()
        for p in sorted(d.rglob("*"), reverse=True):
            p.unlink() if not p.is_dir() else p.rmdir()
        d.rmdir()


_lines = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(st.just(b'{"cmd":"mute"}'), st.just(b'{"cmd":"unmute"}'), st.just(b'{"cmd":"say"}'),
                       st.just(b'{"cmd":"say","text":' + b'"x"' * 3 + b"}"), st.just(b"[]"), st.just(b"null"),
                       st.just(b'{"cmd":1}'), st.just(b"\xff\xfe"), st.just(b'{"cmd":"press"'), st.binary(max_size=20)),
             max_size=8).map(lambda parts: b"\n".join(parts) + b"\n"),
)


@pytest.mark.audio
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(payload=_lines)
def test_any_bytes_to_the_real_daemon_get_replies_or_a_close_and_it_keeps_answering(live_daemon, payload) -> None:
    import socket as _socket

    with _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(live_daemon.control_socket)
        sock.sendall(payload)
        sock.shutdown(_socket.SHUT_WR)  # no more input: the daemon answers what it got, then closes
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    import json

    messages = [json.loads(line) for line in data.splitlines()]  # every line it sent is JSON
    assert messages and messages[0]["type"] == "snapshot"
    assert all(m["type"] in ("snapshot", "state", "ok", "error") for m in messages), messages
    errors = [m for m in messages if m["type"] == "error"]
    assert all(isinstance(m["message"], str) and m["message"] for m in errors)
    assert live_daemon.proc.poll() is None
    # still serving: a fresh client gets its snapshot and a command answered
    assert live_daemon.command("unmute") == {"type": "ok"}


# ---- secrets -------------------------------------------------------------------------------------------------

API_SECRET = "s3cr3t-api-secret-4f9a7c21e0b8"
CREDENTIAL = "dev1ce-credential-77b1e4f0c2a9"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZXZpY2UifQ.literal-token-signature-8c2d"


@pytest.mark.audio
@pytest.mark.slow
def test_known_secrets_never_reach_the_log_the_status_or_the_status_file(audio_rig) -> None:
    """Three failing sessions, one per token source, at debug log level: the endpoint echoes the credential
    back in its error body; the literal token and the api secret go to a server that refuses the connection."""
    d = short_dir("vd-s-")
    endpoint = TokenEndpoint()
    endpoint.behaviour = "echo-500"
    livekit = {"token_source": "endpoint", "endpoint": endpoint.url,
               "endpoint_headers": {"Authorization": f"Bearer {CREDENTIAL}"}, "api_key": "devkey",
               "api_secret": API_SECRET, "token": TOKEN, "url": "ws://127.0.0.1:9"}
    config = base_config(d, livekit=livekit)
    config["logging"]["level"] = "debug"
    path = write_config(d / "config.yaml", config)
    path.chmod(0o600)
    outputs: list[str] = []
    try:
        with DaemonProcess(path, pulse_server=audio_rig.pulse_server, verbose=True) as daemon:
            daemon.wait_ready()
            for source in ("endpoint", "literal", "local"):
                if source != "endpoint":
                    config["livekit"]["token_source"] = source
                    write_config(path, config)
                    mark = daemon.mark()
                    daemon.signal(signal.SIGHUP)
                    daemon.notify.wait(lambda m: m.get("READY") == "1", start=mark)
                mark = daemon.mark()
                daemon.command("start")
                daemon.wait_status("failed:", start=mark)
                wait_until(lambda: daemon.snapshot()["metrics"]["failures"], 10, "a failure counted")
                outputs.append(_cli("status", "--json", "--socket", daemon.control_socket))
                outputs.append(_cli("status", "--socket", daemon.control_socket))
                outputs.append(Path(daemon.status_file).read_text())
                daemon.command("end")
            assert any(CREDENTIAL in str(headers) for _, headers, _ in endpoint.requests), \
                "the endpoint never saw the credential: the test would prove nothing"
            daemon.signal(signal.SIGTERM)
            assert daemon.wait() == 0
            outputs += [daemon.log(), daemon.out()]
    finally:
        endpoint.close()
        shutil.rmtree(d, ignore_errors=True)
    everything = "\n".join(outputs)
    assert "answered HTTP 500" in everything  # the echoing failure was logged, so redaction was exercised
    for secret in (API_SECRET, CREDENTIAL, TOKEN, TOKEN.split(".")[2]):
        assert secret not in everything, f"a secret leaked: {secret[:6]}…"


def _cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "device", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    return proc.stdout + proc.stderr
