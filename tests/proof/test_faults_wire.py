"""The fault matrix's cases that need the wire: the real daemon inside the test namespace against the stub SFU.

Each case asserts the state and reason shown, the recovery, and what was kept. Covered elsewhere, not repeated:
a plain websocket drop with resume, LeaveRequest(RECONNECT) with the buffer re-sent, a bad token, and the agent
never joining (tests/wire/test_daemon_e2e.py).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.programs import need
from tests.proof.harness import DaemonProcess, wait_until, write_config
from tests.stubsfu.netns import NetNs
from tests.wire.conftest import netns  # noqa: F401  (the module-scoped namespace fixture)
from tests.wire.harness import Stub, launch_stub, mint_token
from tests.wire.rig import play_into_mic
from tests.wire.signals import correlation, find_lag, read_wav, speech, write_wav

pytestmark = [pytest.mark.wire, pytest.mark.audio, pytest.mark.slow]

# about 6 s: shorter than a 10 s hold, which is a long press (the end of the session) in push-to-talk
LONG = "This request keeps going for a while, so the connection can drop in the middle of what I say."


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("espeak-ng", "sox")
    return write_wav(tmp_path_factory.mktemp("speech") / "long.wav", speech(LONG))


@pytest.fixture
def bench(netns: NetNs, audio_rig: Any, tmp_path: Path) -> Iterator[Callable[..., tuple[Stub, DaemonProcess]]]:  # noqa: F811
    """`bench(*stub_args, livekit=..., session=...)` → (stub, daemon), the daemon READY; both stopped after."""
    started: list[tuple[Stub, DaemonProcess]] = []

    def go(*stub_args: str, livekit: dict[str, Any] | None = None, session: dict[str, Any] | None = None,
           mode: str = "push_to_talk") -> tuple[Stub, DaemonProcess]:
        stub = launch_stub(netns, tmp_path, *stub_args)
        d = tmp_path / f"daemon-{len(started)}"
        d.mkdir()
        config = {
            # the rig's 48 kHz: every sample accounted for against the 48 kHz test speech
            "audio": {"sample_rate": 48000, "echo_cancellation": False, "noise_suppression": False,
                      "high_pass_filter": False},
            "controls": {"button": {"pin": 17, "hold_s": 10.0}},
            "livekit": {"token_source": "local", "url": stub.url, "api_key": "devkey", "api_secret": "secret",
                        "agent_name": "proof-agent", **(livekit or {})},
            "session": {"mode": mode, "idle_timeout_s": 0, "agent_connect_timeout_s": 15,
                        "backoff": {"base_s": 0.2, "cap_s": 1.0, "attempts": 3}, **(session or {})},
            "daemon": {"control_socket": str(d / "control.sock"), "status_file": str(d / "status.json")},
        }
        path = write_config(d / "config.yaml", config)
        path.chmod(0o600)
        daemon = DaemonProcess(path, pulse_server=audio_rig.pulse_server, prefix=netns.command([]))
        started.append((stub, daemon))
        daemon.wait_ready()
        return stub, daemon

    yield go
    for stub, daemon in started:
        daemon.close()
        stub.process.stop()


def _located_windows(source: Any, heard: Any, win: int = 24000) -> list[tuple[int, int, float]]:
    """(start in source, position in heard, correlation) of each voiced half second of `source`."""
    out = []
    for start in range(0, len(source) - win, win):
        segment = source[start:start + win]
        if float((segment.astype(float) ** 2).mean()) ** 0.5 < 500:  # the lead-in and pauses
            continue
        at = find_lag(segment, heard)
        out.append((start, at, correlation(segment, heard[max(0, at):max(0, at) + win])))
    return out


def meta(stub: Stub, n: int = 1) -> dict[str, Any]:
    stub.control.flush()
    return json.loads((stub.session_dir(n) / "meta.json").read_text())


def device_joins(stub: Stub) -> list[dict[str, Any]]:
    return [e for e in stub.events("participant_joined") if not str(e.get("identity", "")).startswith("agent")]


def test_a_websocket_drop_mid_utterance_keeps_the_session_and_accounts_for_every_sample(bench, audio_rig,
                                                                                          long_wav) -> None:
    """The issue allows two outcomes for the audio of the gap: it reaches the agent after recovery, or it is
    accounted as dropped with a reason. Today it is the second (see the report): the uplink diverts it to a
    re-send buffer that a resume drops. This asserts the session survives, the speech before the drop and after
    the recovery is heard intact, and whatever the agent did not hear is counted, with its reason, in metrics."""
    stub, d = bench("--agent-delay", "0.3", "--ptt")
    d.command("press")
    d.wait_status("listening")
    source = read_wav(long_wav)
    player = play_into_mic(audio_rig.pulse_server, long_wav)
    time.sleep(2.0)  # mid-utterance
    mark = d.mark()
    assert stub.control.drop_websocket()["dropped"] == 1
    d.wait_status("reconnecting", start=mark)
    d.wait_status("listening", start=mark, timeout=20)
    m = d.snapshot()["metrics"]
    assert player.wait(timeout=30) == 0
    mark = d.mark()
    d.command("release")
    d.wait_status("speaking", start=mark, timeout=20)
    assert meta(stub)["preconnect_status"] == "used"
    heard = read_wav(stub.session_dir(1) / "heard.wav")
    windows = _located_windows(source, heard)
    found = [w for w in windows if w[2] > 0.5]
    missing_ms = (len(windows) - len(found)) * 500
    print(f"websocket drop mid-utterance: {len(found)}/{len(windows)} voiced half-seconds heard; "
          f"accounted dropped {m.get('session_audio_dropped_ms', 0)} ms ({m.get('session_audio_drop_reason')!r})")
    assert found and found[0][0] == windows[0][0], "the speech before the drop must be heard"
    assert m["reconnects"] == 1 and not m["failures"] and m["sessions"] == 1
    if missing_ms:  # not heard: then counted, with a reason, and logged
        assert m.get("session_audio_dropped_ms", 0) > 0, f"{missing_ms} ms of speech vanished unaccounted"
        assert m["session_audio_drop_reason"].startswith("resumed")
        assert "audio captured while reconnecting dropped" in d.log()


def test_leave_request_disconnect_ends_the_session_with_a_reason_and_the_next_press_works(bench) -> None:
    stub, d = bench("--agent-delay", "0.3", "--ptt")
    d.command("press")
    d.wait_status("listening")
    d.command("release")
    mark = d.mark()
    stub.control.leave("disconnect")
    index = d.notify.wait(lambda m: m.get("STATUS", "").startswith(("failed", "idle")), start=mark, timeout=20)[0]
    shown = d.notify.messages[index][1]["STATUS"]
    m = d.snapshot()["metrics"]
    assert shown.startswith("failed: ") or shown == "idle", shown
    assert m["reconnects"] == 0, "a DISCONNECT must not be retried as a reconnect"
    # recovery: the next press is a new session that reaches the agent
    mark = d.mark()
    d.command("press")
    d.wait_status("listening", start=mark, timeout=20)
    assert len(device_joins(stub)) == 2
    assert d.snapshot()["metrics"]["mic_open"] is True
    print(f"LeaveRequest(DISCONNECT) shown as {shown!r}")


def test_the_agent_leaving_mid_turn_is_failed_agent_left_and_the_next_press_recovers(bench, audio_rig,
                                                                                     long_wav) -> None:
    stub, d = bench("--agent-delay", "0.3", "--ptt")
    d.command("press")
    d.wait_status("listening")
    player = play_into_mic(audio_rig.pulse_server, long_wav)
    time.sleep(1.0)
    mark = d.mark()
    stub.control.request("POST", "/agent/leave")
    d.wait_status("failed: agent-left", start=mark, timeout=20)
    player.kill()
    assert d.snapshot()["metrics"]["failures"].get("agent-left") == 1
    d.command("release")
    mark = d.mark()
    d.command("press")  # recovery: a new session, a fresh room, an agent that stays
    d.wait_status("listening", start=mark, timeout=25)
    rooms = {e["name"] for e in stub.events("room_created")}
    assert len(rooms) == 2, "the next session must use a fresh room"


def test_a_token_that_expires_during_a_long_session_does_not_end_it(bench) -> None:
    # a literal token valid for 12 s; the server pushes refreshed tokens (every 2 s here, 5 min in production)
    token = mint_token(identity="proof-device", room="proof-room", ttl=timedelta(seconds=12), agent_name="proof-agent")
    stub, d = bench("--agent-delay", "0.3", "--refresh-token-every", "2",
                    livekit={"token_source": "literal", "token": token, "room": "proof-room"})
    d.command("start")
    d.wait_status("listening")
    time.sleep(13)  # the original token has expired now
    mark = d.mark()
    assert stub.control.drop_websocket()["dropped"] == 1  # a resume has to present a valid token
    d.wait_status("reconnecting", start=mark)
    d.wait_status("listening", start=mark, timeout=20)
    assert stub.events("participant_resumed"), "the resume was refused"
    assert stub.events("token_refreshed")
    m = d.snapshot()["metrics"]
    assert not m["failures"] and m["sessions"] == 1


def test_a_press_storm_never_holds_two_sessions_at_once(bench) -> None:
    stub, d = bench("--agent-delay", "0.2", mode="toggle")
    for _ in range(50):  # 50 presses in 5 s: every press toggles the session
        d.command("press")
        d.command("release")
        time.sleep(0.1)
    d.command("end")
    wait_until(lambda: d.snapshot()["state"] == "idle", 30, "idle after the storm")
    time.sleep(2.0)  # abandoned connects finish on their own deadline
    present: set[str] = set()
    most = 0
    device = {e["sid"] for e in device_joins(stub)}
    for e in stub.events():
        if e["kind"] == "participant_joined" and e["sid"] in device:
            present.add(e["sid"])
        elif e["kind"] == "participant_left":
            present.discard(e["sid"])
        most = max(most, len(present))
    assert most <= 1, f"{most} device participants were in rooms at the same time"
    m = d.snapshot()["metrics"]
    print(f"press storm: {m['sessions']} sessions started, {len(device)} joined, failures {m['failures']}")
    assert d.proc.poll() is None and m["mic_open"] is True
    # The SDK itself logs a KeyError from its own event dispatch (room.py, local_track_published) when a room is
    # torn down while its publication is in flight; nothing of ours may fail.
    assert not [line for line in d.log().splitlines() if " error device." in line or "/device/" in line]


@pytest.mark.parametrize("state", ["pre-connect-buffering", "listening", "speaking"])
def test_sigterm_in_a_session_state_exits_0_and_leaves_the_room(bench, audio_rig, long_wav, state: str) -> None:
    args = ("--agent-delay", "never") if state == "pre-connect-buffering" else ("--agent-delay", "0.3")
    stub, d = bench(*args, "--agent-reply", str(long_wav)) if state == "speaking" else bench(*args)
    d.command("press")
    if state == "speaking":
        d.wait_status("listening")
        d.command("release")  # VAD turns (no --ptt): the release ends the turn; the agent answers at length
        player = play_into_mic(audio_rig.pulse_server, long_wav)
        player.wait(timeout=30)
    d.wait_status(state, timeout=30)
    d.signal(signal.SIGTERM)
    d.notify.wait(lambda m: m.get("STOPPING") == "1")
    assert d.wait() == 0, d.log(20)
    wait_until(lambda: any(e["kind"] == "participant_left" for e in stub.events()), 10,
               "the device to leave the room (CLIENT_INITIATED)")
    assert "Traceback" not in d.log()


def test_sighup_with_a_broken_config_mid_session_keeps_the_session(bench) -> None:
    stub, d = bench("--agent-delay", "0.3")
    d.command("start")
    d.wait_status("listening")
    text = d.config_path.read_text()
    d.config_path.write_text(text + "\nsession:\n  mode: nonsense\n")  # a duplicate, invalid section
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.notify.wait(lambda m: m.get("READY") == "1", start=mark)
    snap = d.snapshot()
    assert snap["state"] == "listening" and snap["reason"].startswith("reload failed")
    assert not any(e["kind"] == "participant_left" for e in stub.events()), "the session was dropped"
    assert len(device_joins(stub)) == 1
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
