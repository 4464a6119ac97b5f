"""The fault matrix, for every fault that needs no LiveKit server: each case injects the fault into the real
daemon process, then asserts the state and reason shown, the recovery, and what was kept.

Kept, in these cases, means: the daemon process (never a restart), the mic (open, frames still counted), the
session that was running (its count does not grow with retries), and the answers on the control socket.
The faults that need the wire (websocket drop, LeaveRequest, agent faults, token expiry, press storm) are in
test_faults_wire.py.
"""

from __future__ import annotations

import math
import os
import signal
import struct
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.proof.harness import (
    ROOT,
    DaemonProcess,
    HangingListener,
    TokenEndpoint,
    base_config,
    closed_port,
    mic_gone,
    playback_streams,
    short_dir,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.audio


def _cleanup(d: Path) -> None:
    for p in sorted(d.rglob("*"), reverse=True):
        p.unlink() if not p.is_dir() else p.rmdir()
    d.rmdir()


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = short_dir("vd-f-")
    yield d
    _cleanup(d)


def metrics(d: DaemonProcess) -> dict[str, Any]:
    return d.snapshot()["metrics"]


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


# ---- the token endpoint misbehaves -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint_rig(audio_rig) -> Iterator[tuple[DaemonProcess, TokenEndpoint, HangingListener]]:
    """One daemon for the whole endpoint matrix (each case starts and ends its own session): the endpoint's
    healthy answer points at a listener that never answers, so a recovered session visibly gets past the token
    and sits in `connecting` until the case ends it."""
    d = short_dir("vd-fe-")
    listener = HangingListener()
    endpoint = TokenEndpoint(server_url=f"ws://127.0.0.1:{listener.port}")
    config = base_config(d, livekit={"token_source": "endpoint", "endpoint": endpoint.url, "http_timeout_s": 1.0,
                                     "endpoint_headers": {"Authorization": "Bearer device-credential"}})
    config["session"].update(connect_timeout_s=30, backoff={"base_s": 0.2, "cap_s": 0.5, "attempts": 0})
    daemon = DaemonProcess(write_config(d / "config.yaml", config), pulse_server=audio_rig.pulse_server)
    try:
        daemon.wait_ready()
        yield daemon, endpoint, listener
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.close()
        endpoint.close()
        listener.close()
        _cleanup(d)


@pytest.mark.parametrize(("behaviour", "reason", "detail"), [
    ("500", "token-endpoint", "answered HTTP 500"),
    ("hang", "unreachable", "did not answer within 1 s"),
    ("garbage", "token-endpoint", "not JSON"),
    ("huge", "token-endpoint", "too large"),
    ("redirect-http", "token-endpoint", "not HTTPS"),
])
def test_a_broken_token_endpoint_shows_its_reason_keeps_the_session_and_recovers_when_fixed(
        endpoint_rig, behaviour: str, reason: str, detail: str) -> None:
    d, endpoint, listener = endpoint_rig
    if d.snapshot()["state"] != "idle":  # an earlier case failed half-way: start from idle anyway
        d.command("end")
        wait_until(lambda: d.snapshot()["state"] == "idle", 10, "idle before the case")
    before = metrics(d)
    rss_before = peak_rss_kb(d.pid)
    endpoint.behaviour = behaviour
    connections = len(listener.accepted)
    mark = d.mark()
    log_mark = len(d.log().splitlines())
    assert d.command("start") == {"type": "ok"}
    d.wait_status(f"failed: {reason}", start=mark)
    # the sentence comes from the session process's log, forwarded beside the state: it may land just after it
    wait_until(lambda: detail in "\n".join(d.log().splitlines()[log_mark:]), 5, f"the log to say {detail!r}")
    wait_until(lambda: metrics(d)["failures"].get(reason, 0) >= before["failures"].get(reason, 0) + 2, 15,
               "a retry with backoff that fails the same way")
    if behaviour == "huge":
        # the 20 MB answer was cut short, not read into memory
        assert peak_rss_kb(d.pid) - rss_before < 8 * 1024, "the huge token answer was read into memory"
    if behaviour == "redirect-http":
        assert all(path == "/token" for path, _, _ in endpoint.requests)  # the credential went nowhere else

    endpoint.behaviour = "ok"  # the operator fixes the endpoint: the next retry gets a token and connects
    # The retry already in flight may be the one that gets the token (no new STATUS then): wait for the state,
    # not for a transition into it.
    wait_until(lambda: d.snapshot()["state"] == "connecting", 15, "connecting with a token")
    wait_until(lambda: len(listener.accepted) > connections, 15, "the room connect after the token")
    after = metrics(d)
    assert after["sessions"] == before["sessions"] + 1  # retries are not new sessions
    assert after["mic_open"] is True and after["audio_frames_captured"] > before["audio_frames_captured"]
    assert d.command("end") == {"type": "ok"}
    d.wait_status("idle", start=mark + 1)


def test_a_server_unreachable_at_start_does_not_delay_ready_and_is_retried_until_it_answers(workdir, audio_rig):
    port = closed_port()
    config = base_config(workdir, livekit={"token_source": "literal", "url": f"ws://127.0.0.1:{port}",
                                           "token": "header.payload.signature"})
    config["session"].update(mode="always_on", connect_timeout_s=30,
                             backoff={"base_s": 0.2, "cap_s": 0.5, "attempts": 0})
    with DaemonProcess(write_config(workdir / "config.yaml", config), pulse_server=audio_rig.pulse_server) as d:
        d.wait_ready()  # always_on starts its session at boot; READY does not wait for it
        d.wait_status("failed: unreachable")
        wait_until(lambda: metrics(d)["failures"].get("unreachable", 0) >= 3, 15, "three refused attempts")
        listener = HangingListener(port=port)  # the server comes up
        try:
            listener.wait_connection(timeout=15)
            d.wait_status("connecting", start=d.mark() - 1)
            m = metrics(d)
            assert m["sessions"] == 1 and m["mic_open"] is True
            d.signal(signal.SIGTERM)
            assert d.wait() == 0
        finally:
            listener.close()


# ---- audio devices -------------------------------------------------------------------------------------------


def test_the_mic_vanishing_mid_session_shows_failed_and_returning_restores_the_same_session(workdir, audio_rig):
    endpoint = TokenEndpoint()
    endpoint.behaviour = "hang"  # the session stays in `connecting`: a link the mic fault must not end
    config = base_config(workdir, livekit={"token_source": "endpoint", "endpoint": endpoint.url,
                                           "http_timeout_s": 60})
    config["session"]["connect_timeout_s"] = 60
    try:
        with DaemonProcess(write_config(workdir / "config.yaml", config), pulse_server=audio_rig.pulse_server) as d:
            d.wait_ready()
            d.command("start")
            d.wait_status("connecting")
            # mid-session: the session's own process is fetching its token (READY=1 can precede that process)
            wait_until(lambda: len(endpoint.requests) == 1, 30, "the session's token request")
            with mic_gone(audio_rig):
                d.wait_status("failed: mic-unavailable", start=d.mark() - 1)
                assert metrics(d)["mic_open"] is False
                assert d.command("mute") == {"type": "ok"}  # still answering while the mic is gone
                assert d.snapshot()["reason"] == "mic-unavailable"  # a failure outranks muted
            d.wait_status("muted", timeout=20, start=d.mark() - 1)  # the mic is back; the user's mute is kept
            assert d.command("unmute") == {"type": "ok"}
            d.wait_status("connecting", start=d.mark() - 1)  # the same session, never ended
            m = metrics(d)
            assert m["sessions"] == 1 and len(endpoint.requests) == 1, d.log()
            assert m["mic_open"] is True and m["audio_input_reopens"] >= 1
            frames = m["audio_frames_captured"]
            wait_until(lambda: metrics(d)["audio_frames_captured"] > frames, 10, "frames flowing again")
            d.signal(signal.SIGTERM)
            assert d.wait() == 0
    finally:
        endpoint.close()


def _tone_wav(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        n = int(48000 * seconds)
        w.writeframes(struct.pack(f"<{n}h", *(int(8000 * math.sin(2 * math.pi * 440 * i / 48000)) for i in range(n))))
    return path


def test_the_speaker_vanishing_mid_playback_is_reopened_and_the_mic_and_session_are_kept(workdir, audio_rig):
    endpoint = TokenEndpoint()
    endpoint.behaviour = "hang"
    config = base_config(workdir, livekit={"token_source": "endpoint", "endpoint": endpoint.url,
                                           "http_timeout_s": 60})
    config["audio"]["earcons"] = {"listening": str(_tone_wav(workdir / "long.wav", 6.0))}
    config["session"]["connect_timeout_s"] = 60
    try:
        with DaemonProcess(write_config(workdir / "config.yaml", config), pulse_server=audio_rig.pulse_server) as d:
            d.wait_ready()
            d.command("start")  # plays the 6 s earcon: the output stream opens
            d.wait_status("connecting")

            def our_streams() -> list[str]:
                return playback_streams(audio_rig, d.pid)  # this daemon's: other daemons may play on the rig too

            wait_until(lambda: bool(our_streams()), 10, "the daemon's playback stream")
            # The stream plays on a second (USB) speaker that then hangs and is unplugged. PulseAudio 16 rescues
            # the streams of a removed sink by itself, so the hang (a suspended sink: it stops taking audio) is
            # what the daemon sees; the mic, on the first sink's monitor, keeps running.
            usb = audio_rig.pactl("load-module", "module-null-sink", "sink_name=usb_speaker", "rate=48000").strip()
            try:
                for index in our_streams():
                    audio_rig.pactl("move-sink-input", index, "usb_speaker")
                audio_rig.pactl("suspend-sink", "usb_speaker", "1")
                wait_until(lambda: metrics(d)["audio_output_reopens"] >= 1, 10, "the lost output noticed")
            finally:
                audio_rig.pactl("unload-module", usb)
            assert "audio output lost" in d.log()
            wait_until(lambda: bool(our_streams()), 10, "the output reopened to finish the sound")
            m = metrics(d)
            assert m["mic_open"] is True and m["audio_input_reopens"] == 0
            assert d.snapshot()["state"] == "connecting" and m["sessions"] == 1
            d.signal(signal.SIGTERM)
            assert d.wait() == 0
    finally:
        endpoint.close()


# ---- the button ----------------------------------------------------------------------------------------------


def test_a_hundred_bounces_make_one_press(workdir, audio_rig):
    endpoint = TokenEndpoint()
    endpoint.behaviour = "hang"
    config = base_config(workdir, livekit={"token_source": "endpoint", "endpoint": endpoint.url,
                                           "http_timeout_s": 60})
    config["controls"]["button"]["bounce_ms"] = 300  # the chatter arrives over the socket: give it room
    config["controls"]["button"]["hold_s"] = 10  # the contact settles closed: no hold gesture within the test
    try:
        with DaemonProcess(write_config(workdir / "config.yaml", config), pulse_server=audio_rig.pulse_server) as d:
            d.wait_ready()
            mark = d.mark()
            edges = ["press", "release"] * 50 + ["press"]  # 100 bounces, and the contact settles closed
            replies = d.send_raw(b"".join(b'{"cmd":"%s"}\n' % e.encode() for e in edges), len(edges))  # one burst
            assert replies == [{"type": "ok"}] * len(edges)
            wait_until(lambda: len(endpoint.requests) >= 1, 10, "the session's token request")
            time.sleep(0.6)  # two debounce windows: a second gesture, if any, would have been taken by now
            assert metrics(d)["sessions"] == 1
            assert d.notify.statuses()[-1] == "connecting"
            assert [s for _, m in d.notify.messages[mark:] if (s := m.get("STATUS"))] == ["connecting"]
            d.command("release")
            d.command("end")
            d.signal(signal.SIGTERM)
            assert d.wait() == 0
            assert len(endpoint.requests) == 1
    finally:
        endpoint.close()


# ---- signals -------------------------------------------------------------------------------------------------


STATES = ["idle", "muted", "connecting-token", "connecting-room", "failed-unreachable", "failed-mic"]


@pytest.mark.slow
@pytest.mark.parametrize("state", STATES)
def test_sigterm_in_every_state_exits_0_after_stopping(workdir, audio_rig, state: str) -> None:
    listener = HangingListener()
    endpoint = TokenEndpoint(server_url=f"ws://127.0.0.1:{listener.port}")
    endpoint.behaviour = {"connecting-token": "hang", "connecting-room": "ok"}.get(state, "500")
    config = base_config(workdir, livekit={"token_source": "endpoint", "endpoint": endpoint.url,
                                           "http_timeout_s": 60})
    config["session"].update(connect_timeout_s=60, backoff={"base_s": 0.5, "cap_s": 1, "attempts": 0})
    try:
        with DaemonProcess(write_config(workdir / "config.yaml", config), pulse_server=audio_rig.pulse_server) as d:
            d.wait_ready()
            match state:
                case "muted":
                    d.command("mute")
                case "connecting-token":
                    d.command("start")
                    wait_until(lambda: len(endpoint.requests) == 1, 10, "the token request in flight")
                case "connecting-room":
                    d.command("start")
                    listener.wait_connection()
                case "failed-unreachable":
                    d.command("start")
                case "failed-mic":
                    with mic_gone(audio_rig):
                        d.wait_status("failed: mic-unavailable")
                        d.signal(signal.SIGTERM)
                        d.notify.wait(lambda m: m.get("STOPPING") == "1")
                        assert d.wait() == 0, d.log()
                    return
            shown = {"connecting-token": "connecting", "connecting-room": "connecting",
                     "failed-unreachable": "failed: token-endpoint"}.get(state, state)
            d.wait_status(shown)
            d.signal(signal.SIGTERM)
            d.notify.wait(lambda m: m.get("STOPPING") == "1")
            assert d.wait() == 0, d.log()
            # everything closed inside the budget; a native connect in flight is abandoned, not waited for
            assert "stop budget exceeded" not in d.log()
            if state == "connecting-room":
                assert "session close abandoned" in d.log()
    finally:
        endpoint.close()
        listener.close()


# ---- a blocked loop and a hung audio device: the watchdog stops pinging --------------------------------------


def test_the_watchdog_stops_pinging_while_the_loop_is_blocked_or_the_mic_hangs_and_resumes_after(workdir, audio_rig):
    path = write_config(workdir / "config.yaml", base_config(workdir))
    # the real daemon, started by a wrapper that blocks its loop for 1.5 s on SIGUSR1 (tests/proof/blocking.py)
    d = DaemonProcess(path, pulse_server=audio_rig.pulse_server, watchdog_usec=400_000, watchdog_pid=None,
                      launcher=[sys.executable, str(ROOT / "tests" / "proof" / "blocking.py")])
    pulse_pid = int((audio_rig.dir / "pulseaudio.pid").read_text())
    with d:
        d.wait_ready()
        d.notify.wait(lambda m: m.get("WATCHDOG") == "1")
        wait_until(lambda: len(d.notify.pings()) >= 3, 10, "steady pings")

        t0, line = time.monotonic(), d.log_lines()
        d.signal(signal.SIGUSR1)  # the loop sleeps 1.5 s; the checker thread keeps running
        wait_until(lambda: "watchdog withheld reason=loop-blocked" in d.log_since(line), 10, "the blocked loop noticed")
        wait_until(lambda: "watchdog pings resumed" in d.log_since(line), 10, "pings resumed")
        t1 = time.monotonic()
        assert not [t for t in d.notify.pings() if t0 + 0.5 < t < t0 + 1.5], "a ping while the loop was blocked"
        wait_until(lambda: any(t > t1 for t in d.notify.pings()), 5, "a ping after the loop came back")

        # the audio server hangs (SIGSTOP): the loop is fine but no mic frames arrive
        t0, line = time.monotonic(), d.log_lines()
        os.kill(pulse_pid, signal.SIGSTOP)
        try:
            time.sleep(0.8)  # under the engine's 1 s stall limit: the mic is still "open", just silent
        finally:
            os.kill(pulse_pid, signal.SIGCONT)
        t1 = time.monotonic()
        assert not [t for t in d.notify.pings() if t0 + 0.45 < t < t1], "a ping while the mic delivered nothing"
        wait_until(lambda: any(t > t1 for t in d.notify.pings()), 5, "a ping after the mic came back")
        assert "watchdog withheld reason=mic-silent" in d.log_since(line)
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
