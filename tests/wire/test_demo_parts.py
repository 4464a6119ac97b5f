"""The demo's choices, without starting anything: which server, which network, which audio."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.wire import demo


def test_a_real_server_needs_url_key_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.setenv(key, "x")
    assert demo.real_server()
    monkeypatch.setenv("LIVEKIT_API_SECRET", "")
    assert not demo.real_server()


def test_without_root_the_stub_uses_this_machines_own_address_and_says_why(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(demo, "non_loopback_ipv4", lambda: "192.0.2.7")
    network = demo.Network()
    network.open()
    assert network.host == "192.0.2.7" and network.netns is None
    assert network.command(["x"]) == ["x"]
    said = capsys.readouterr().out
    assert "libwebrtc ignores loopback" in said and said.count("\n") == 1


def test_without_root_and_without_an_address_the_demo_asks_for_sudo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(demo, "non_loopback_ipv4", lambda: None)
    with pytest.raises(demo.DemoError, match="sudo"):
        demo.Network().open()


def test_non_loopback_address_is_never_loopback() -> None:
    address = demo.non_loopback_ipv4()
    assert address is None or not address.startswith("127.")


def test_pulse_server_in_the_environment_is_used_and_no_rig_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_SERVER", "unix:/nonexistent/native")
    ran: list[list[str]] = []
    monkeypatch.setattr(demo.subprocess, "run", lambda argv, **kw: ran.append(argv))
    audio = demo.Audio()
    audio.open()
    audio.close()
    assert audio.env() == {"PULSE_SERVER": "unix:/nonexistent/native"} and not audio.virtual
    assert ran == [], "nothing to start or stop"


def test_without_a_card_the_rig_is_started_and_only_a_rig_it_started_is_stopped(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PULSE_SERVER", raising=False)
    monkeypatch.setattr(demo, "has_sound_card", lambda: False)
    ran: list[str] = []

    def fake_run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        ran.append(argv[-1])
        code = 3 if argv[-1] == "status" else 0  # not running yet
        return subprocess.CompletedProcess(argv, code, stdout=f"export PULSE_SERVER=unix:{tmp_path}/native\n",
                                           stderr="")

    monkeypatch.setattr(demo.subprocess, "run", fake_run)
    audio = demo.Audio()
    audio.open()
    assert audio.virtual and audio.pulse_server == f"unix:{tmp_path}/native"
    audio.close()
    assert ran == ["status", "start", "env", "stop"]

    ran.clear()
    monkeypatch.setattr(demo.subprocess, "run", lambda argv, **kw: (ran.append(argv[-1]), subprocess.CompletedProcess(
        argv, 0, stdout=f"export PULSE_SERVER=unix:{tmp_path}/native\n", stderr=""))[1])
    already = demo.Audio()
    already.open()
    already.close()
    assert ran == ["status", "env"], "a rig that was already running is left running"
