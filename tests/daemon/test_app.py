"""The daemon process as systemd runs it: `voice-device run --config FILE --simulate` in a subprocess with a test
datagram socket as $NOTIFY_SOCKET, the virtual audio rig, and its control socket in a temp dir.

Nothing here needs a LiveKit server: the token endpoint is a closed port, a local aiohttp server, or a TCP
listener that never answers (so a connect stays in flight). Waits are bounded; nothing is timed.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.programs import need
from tests.proof.harness import (
    DaemonProcess,
    HangingListener,
    TokenEndpoint,
    base_config,
    mic_gone,
    short_dir,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.audio


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = short_dir("vd-app-")
    yield d
    for p in sorted(d.rglob("*"), reverse=True):
        p.unlink() if not p.is_dir() else p.rmdir()
    d.rmdir()


def start(workdir: Path, audio_rig, config: dict | None = None, **kwargs) -> DaemonProcess:
    path = write_config(workdir / "config.yaml", config or base_config(workdir))
    return DaemonProcess(path, pulse_server=audio_rig.pulse_server, **kwargs)


def test_ready_once_audio_and_controls_are_up_then_status_on_every_change_then_stopping(workdir, audio_rig) -> None:
    with start(workdir, audio_rig, watchdog_usec=400_000) as d:
        assert d.wait_ready() == {"READY": "1", "STATUS": "idle"}  # the token endpoint is a closed port
        snap = d.snapshot()
        assert snap["metrics"]["mic_open"] is True
        mark = d.mark()
        assert d.command("start") == {"type": "ok"}
        d.wait_status("connecting", start=mark)
        d.wait_status("failed: unreachable", start=mark)
        assert d.command("end") == {"type": "ok"}
        d.wait_status("idle", start=mark + 1)
        d.notify.wait(lambda m: m.get("WATCHDOG") == "1", timeout=5)  # WATCHDOG_PID=$$: the pings are ours
        d.signal(signal.SIGTERM)
        d.notify.wait(lambda m: m.get("STOPPING") == "1")
        assert d.wait() == 0, d.log()
        statuses = d.notify.statuses()
        # one STATUS per change: never the same text twice in a row
        assert all(a != b for a, b in itertools.pairwise(statuses)), statuses
        assert sum(1 for _, m in d.notify.messages if m.get("READY") == "1") == 1
        assert not Path(d.control_socket).exists()


def test_watchdog_pings_at_half_the_interval_only_for_the_process_systemd_named(workdir, audio_rig) -> None:
    # WATCHDOG_PID unset: the pings are ours
    with start(workdir, audio_rig, watchdog_usec=300_000, watchdog_pid=None) as d:
        d.wait_ready()
        d.notify.wait(lambda m: m.get("WATCHDOG") == "1", timeout=5)
        first = len(d.notify.pings())
        wait_until(lambda: len(d.notify.pings()) >= first + 3, 10, "three more pings")
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
        # a healthy start-up is not reported as a silent mic before the first block has arrived
        assert "watchdog withheld" not in d.log(), d.log()
    # WATCHDOG_PID names another process (a parent that exported it): no pings at all from us
    with start(workdir, audio_rig, watchdog_usec=300_000, watchdog_pid="1") as d:
        d.wait_ready()
        d.command("mute")  # a round trip through the loop, and some time for pings to have been sent
        d.wait_status("muted")
        time.sleep(1.0)  # 6 intervals of 150 ms: a pinging daemon would have sent several by now
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
        assert d.notify.pings() == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_mid_connect_ends_the_session_and_exits_0_within_the_budget(workdir, audio_rig, sig) -> None:
    listener = HangingListener()  # accepts the websocket's TCP connection and never answers it
    config = base_config(workdir, livekit={"token_source": "literal", "url": f"ws://127.0.0.1:{listener.port}",
                                           "token": "header.payload.signature"},
                         session={"mode": "push_to_talk", "connect_timeout_s": 60})
    try:
        with start(workdir, audio_rig, config) as d:
            d.wait_ready()
            d.command("start")
            d.wait_status("connecting")
            listener.wait_connection()  # the SDK's connect is in flight now
            d.signal(sig)
            d.notify.wait(lambda m: m.get("STOPPING") == "1")
            assert d.wait(timeout=8) == 0, d.log()  # a bound, not a measurement: the budget is 5 s
            assert "stopping signal=" + sig.name in d.log()
    finally:
        listener.close()


def test_sighup_with_a_broken_config_keeps_running_and_a_fixed_one_reloads(workdir, audio_rig) -> None:
    config = base_config(workdir)
    with start(workdir, audio_rig, config) as d:
        d.wait_ready()
        good = d.config_path.read_text()
        d.config_path.write_text(good.replace("block_ms: 20", "block_ms: 25"))  # not a choice: invalid
        mark = d.mark()
        d.signal(signal.SIGHUP)
        assert d.notify.wait(lambda m: "RELOADING" in m, start=mark)[1]["RELOADING"] == "1"
        d.notify.wait(lambda m: m.get("READY") == "1", start=mark)
        snap = d.snapshot()
        assert snap["state"] == "idle"
        assert snap["reason"].startswith("reload failed, old configuration kept: config.yaml:")
        assert "audio.block_ms" in snap["reason"]
        assert snap["metrics"]["reload_error"] == snap["reason"]
        assert d.status_file_json()["reason"] == snap["reason"]
        assert snap["metrics"]["reloads"] == 0
        assert d.command("mute") == {"type": "ok"}  # still answering, still the old config's machine
        d.wait_status("muted: reload failed, old configuration kept:", start=mark)
        assert "reload failed, keeping the running configuration" in d.log()

        d.config_path.write_text(good.replace("push_to_talk", "toggle"))
        mark = d.mark()
        d.signal(signal.SIGHUP)
        d.notify.wait(lambda m: "RELOADING" in m, start=mark)
        d.notify.wait(lambda m: m.get("READY") == "1", start=mark)
        snap = d.snapshot()
        assert snap["metrics"]["reloads"] == 1
        assert snap["reason"] is None and "reload_error" not in snap["metrics"]
        assert snap["state"] == "muted"  # a reload rebuilds the parts, and mute means mute: it survives it
        assert snap["metrics"]["mic_open"] is True
        d.signal(signal.SIGTERM)
        assert d.wait() == 0


def test_a_config_error_at_start_exits_2_with_one_line(workdir, audio_rig) -> None:
    config = base_config(workdir)
    config["session"]["mode"] = "walkie_talkie"
    with start(workdir, audio_rig, config) as d:
        assert d.wait(timeout=20) == 2
        lines = d.log().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("voice-device: config.yaml:")
        assert "session.mode" in lines[0] and "push_to_talk" in lines[0]
        assert d.notify.messages == []  # never READY


@pytest.mark.parametrize("process", ["warm", "on_demand", "inline"])
def test_every_control_command_through_the_real_daemon(workdir, audio_rig, process: str) -> None:
    endpoint = TokenEndpoint()
    endpoint.behaviour = "hang"  # a session stays in `connecting` until it is ended
    config = base_config(workdir, livekit={"token_source": "endpoint", "endpoint": endpoint.url,
                                           "http_timeout_s": 30})
    config["session"]["connect_timeout_s"] = 60
    config["session"]["process"] = process
    try:
        with start(workdir, audio_rig, config) as d:
            d.wait_ready()
            with d.client() as c:
                assert c.snapshot()["state"] == "idle"
                assert c.command({"cmd": "start"}) == {"type": "ok"}
                assert c.read()["state"] == "connecting"
                wait_until(lambda: len(endpoint.requests) == 1, 10, "the session's token request")
                assert c.command({"cmd": "end"}) == {"type": "ok"}
                assert c.read()["state"] == "idle"
                assert c.command({"cmd": "mute"}) == {"type": "ok"}
                assert c.read()["state"] == "muted"
                assert c.command({"cmd": "unmute"}) == {"type": "ok"}
                assert c.read()["state"] == "idle"
                assert c.command({"cmd": "press"}) == {"type": "ok"}  # drives the mock pin: the real gesture path
                assert c.read()["state"] == "connecting"
                wait_until(lambda: len(endpoint.requests) == 2, 10, "the second session's token request")
                assert c.command({"cmd": "release"}) == {"type": "ok"}
                assert c.command({"cmd": "end"}) == {"type": "ok"}
                assert c.read()["state"] == "idle"
                reply = c.command({"cmd": "say", "text": "hello"})
                assert reply["type"] == "error" and "no session is connected" in reply["message"]
                reply = c.command({"cmd": "reboot"})
                assert reply["type"] == "error" and "unknown command" in reply["message"]
            m = d.snapshot()["metrics"]
            assert m["sessions"] == 2
            if process == "inline":
                assert "session_processes_started" not in m
            else:  # one child per session
                assert m["session_processes_started"] >= 2
            d.signal(signal.SIGTERM)
            assert d.wait() == 0
    finally:
        endpoint.close()


def test_the_volume_commands_move_the_alsa_mixer_control_the_daemon_was_given(workdir, audio_rig) -> None:
    """audio.mixer on the rig's real ALSA control interface (`amixer -D pulse`: alsa-plugins' ctl.pulse, which
    moves the sound server's sink): the level it had is the device's volume, the commands (the same event as the
    volume buttons) step the control, the samples are not scaled a second time."""
    need("amixer")
    config = base_config(workdir)
    config["audio"] |= {"mixer": "Master", "mixer_device": "pulse", "volume": 0.9}

    def sink() -> int:
        return int(audio_rig.pactl("get-sink-volume", "spk").split("/")[1].strip().rstrip("%"))

    audio_rig.pactl("set-sink-volume", "spk", "50%")
    try:
        with start(workdir, audio_rig, config) as d:
            d.wait_ready()
            assert d.snapshot()["volume"] == 0.5  # the control's level, not audio.volume
            assert d.command("volume-up") == {"type": "ok"}
            wait_until(lambda: sink() == 60, 10, "the sink at 60 %")
            for _ in range(3):
                assert d.command("volume-down") == {"type": "ok"}
            wait_until(lambda: sink() == 30, 10, "the sink at 30 %")
            assert d.snapshot()["volume"] == pytest.approx(0.3)
    finally:
        audio_rig.pactl("set-sink-volume", "spk", "100%")


def test_a_mic_missing_at_start_is_failed_mic_unavailable_until_the_source_comes_back(workdir, audio_rig) -> None:
    with mic_gone(audio_rig):
        d = start(workdir, audio_rig)
        # audio and controls are up: a missing device is the engine's to reopen, not fatal; READY=1 carries the
        # whole status (systemd shows the last STATUS=: a bare `failed` hid the reason)
        assert d.wait_ready() == {"READY": "1", "STATUS": "failed: mic-unavailable"}
        assert d.snapshot()["metrics"]["mic_open"] is False
    with d:
        d.wait_status("idle", timeout=20)
        wait_until(lambda: d.snapshot()["metrics"]["mic_open"], 10, "mic open again")
        frames = d.snapshot()["metrics"]["audio_frames_captured"]
        wait_until(lambda: d.snapshot()["metrics"]["audio_frames_captured"] > frames, 10, "frames flowing")
        d.signal(signal.SIGTERM)
        assert d.wait() == 0


def test_a_press_right_after_end_starts_a_session_the_old_ones_end_does_not_cancel(workdir, audio_rig) -> None:
    # The supervisor confirms an end (SessionEnded) after the machine already went idle on the request; a press
    # in between used to take that confirmation for the end of the NEW session (idle, then connecting again,
    # with the push-to-talk turn forgotten so the release never ended it — found by the soak benchmark).
    endpoint = TokenEndpoint()
    endpoint.behaviour = "hang"
    config = base_config(workdir, livekit={"token_source": "endpoint", "endpoint": endpoint.url,
                                           "http_timeout_s": 60})
    config["session"]["connect_timeout_s"] = 60
    config["controls"]["button"]["hold_s"] = 10  # the press stays down: no hold gesture within the test
    try:
        with start(workdir, audio_rig, config) as d:
            d.wait_ready()
            d.command("start")
            d.wait_status("connecting")
            wait_until(lambda: len(endpoint.requests) == 1, 10, "the first session's token request")
            mark = d.mark()
            assert d.send_raw(b'{"cmd":"end"}\n{"cmd":"press"}\n', 2) == [{"type": "ok"}] * 2
            wait_until(lambda: len(endpoint.requests) == 2, 10, "the second session's token request")
            time.sleep(0.5)  # room for a late, wrong `idle`
            assert [s for _, m in d.notify.messages[mark:] if (s := m.get("STATUS"))] == ["idle", "connecting"]
            assert d.snapshot()["metrics"]["sessions"] == 2
            d.signal(signal.SIGTERM)
            assert d.wait() == 0
    finally:
        endpoint.close()


def test_idle_after_a_session_above_the_memory_limit_exits_75_for_systemd_to_restart(workdir, audio_rig) -> None:
    config = base_config(workdir)
    config["daemon"]["restart_above_rss_mb"] = 1  # any real process is above 1 MB
    with start(workdir, audio_rig, config) as d:
        d.wait_ready()
        time.sleep(0.5)
        assert d.snapshot()["state"] == "idle"  # idle at start-up is not "after a session": no restart yet
        mark = d.mark()
        assert d.command("start") == {"type": "ok"}
        d.wait_status("connecting", start=mark)
        d.command("end")
        assert d.wait(timeout=10) == 75, d.log()
        assert "restarting to return memory" in d.log()


def test_a_second_planned_restart_waits_for_the_minimum_interval_then_comes_if_still_idle(workdir,
                                                                                           audio_rig) -> None:
    """The saved state remembers the last planned restart of this boot: the next daemon, bloated again after a
    session (a failed one counts), waits daemon.restart_min_interval_s since then, and restarts then if idle."""
    config = base_config(workdir)
    config["daemon"].update(restart_above_rss_mb=1, state_dir=str(workdir / "state"))
    with start(workdir, audio_rig, config) as d:
        d.wait_ready()
        d.command("start")
        d.wait_status("failed: unreachable")
        d.command("end")
        assert d.wait(timeout=10) == 75, d.log()  # the first one: at once
    saved = json.loads((workdir / "state" / "state.json").read_text())
    assert saved["planned_restart_boot"] and saved["planned_restart_at"] > 0
    config["daemon"]["restart_min_interval_s"] = 75  # the smallest allowed
    # as if the previous one had been 55 s ago: 20 s to wait, far more than a start, a failed session and an end
    # take on a loaded machine (the deferral's own log line says what it computed)
    saved["planned_restart_at"] -= 55
    previous = saved["planned_restart_at"]
    (workdir / "state" / "state.json").write_text(json.dumps(saved))
    with start(workdir, audio_rig, config) as d:
        d.wait_ready()
        mark = d.mark()
        d.command("start")
        d.wait_status("failed: unreachable", start=mark)
        d.command("end")
        d.wait_status("idle", start=mark)
        wait_until(lambda: "planned restart deferred" in d.log(), 10, "the deferral in the log")
        wait_s = float(re.search(r"planned restart deferred .*wait_s=(\d+)", d.log()).group(1))
        assert 0 < wait_s <= 20, d.log()
        assert d.wait(timeout=wait_s + 30) == 75, d.log()  # then idle still: the restart comes
        assert d.log().count("restarting to return memory") == 1
    # measured on the daemon's own clock (CLOCK_BOOTTIME, saved with the restart), not the test's wall time
    restarted = json.loads((workdir / "state" / "state.json").read_text())
    assert restarted["planned_restart_boot"] == saved["planned_restart_boot"]
    assert restarted["planned_restart_at"] - previous >= 75, "it restarted before the minimum interval"


def test_the_memory_limit_is_off_by_default(workdir, audio_rig) -> None:
    with start(workdir, audio_rig) as d:
        d.wait_ready()
        mark = d.mark()
        d.command("start")
        d.wait_status("connecting", start=mark)
        d.command("end")
        d.wait_status("idle", start=mark + 1)
        d.signal(signal.SIGTERM)
        assert d.wait() == 0, d.log()


def test_muted_a_start_command_is_refused_with_a_sentence_and_opens_nothing(workdir, audio_rig) -> None:
    """The room behind "muted": a `ctl start` (or a press) while muted must not open a room the display would not
    show. The command answers with the sentence; the state stays muted; no session is attempted (the token
    endpoint of the base config is a closed port: an attempt would show failed: unreachable)."""
    with start(workdir, audio_rig) as d:
        d.wait_ready()
        mark = d.mark()
        d.command("mute")
        d.wait_status("muted", start=mark)
        reply = d.command("start")
        assert reply["type"] == "error" and "muted" in reply["message"] and "ctl unmute" in reply["message"], reply
        d.command("press")
        d.command("release")
        wait_until(lambda: "start refused" in d.log(), 5, "the refusal in the log")
        assert d.snapshot()["state"] == "muted"
        assert not any(m.get("STATUS") != "muted" for m in d.notify.messages[mark + 1:] if "STATUS" in m), d.log()
        d.signal(signal.SIGTERM)
        assert d.wait() == 0, d.log()


def test_mute_survives_a_reload_and_a_restart_and_boot_muted_wins_at_start_up(workdir, audio_rig) -> None:
    config = base_config(workdir)
    config["daemon"]["state_dir"] = str(workdir / "state")
    with start(workdir, audio_rig, config) as d:
        d.wait_ready()
        mark = d.mark()
        assert d.command("mute") == {"type": "ok"}
        d.wait_status("muted", start=mark)
        mark = d.mark()
        d.signal(signal.SIGHUP)
        d.notify.wait(lambda m: m.get("READY") == "1", start=mark)
        assert d.snapshot()["state"] == "muted"  # a reload keeps it
        d.signal(signal.SIGTERM)
        assert d.wait() == 0, d.log()
    assert (workdir / "state" / "state.json").exists()
    with start(workdir, audio_rig, config) as d:
        d.wait_ready()
        wait_until(lambda: d.snapshot()["state"] == "muted", 10, "muted again after the restart")
        assert d.command("unmute") == {"type": "ok"}
        wait_until(lambda: d.snapshot()["state"] == "idle", 10, "unmuted")
        d.signal(signal.SIGTERM)
        assert d.wait() == 0, d.log()
    config["daemon"]["boot_muted"] = True
    write_config(workdir / "config.yaml", config)
    with start(workdir, audio_rig, config) as d:
        d.wait_ready()
        wait_until(lambda: d.snapshot()["state"] == "muted", 10, "boot_muted")
        d.signal(signal.SIGTERM)
        assert d.wait() == 0, d.log()


def test_the_software_volume_set_survives_a_reload_and_a_restart_and_audio_volume_is_only_the_first_starts(
        workdir, audio_rig) -> None:
    config = base_config(workdir)
    config["daemon"]["state_dir"] = str(workdir / "state")
    config["audio"]["volume"] = 0.8  # no audio.mixer: the volume is in software
    with start(workdir, audio_rig, config) as d:
        d.wait_ready()
        assert d.snapshot()["volume"] == pytest.approx(0.8)  # the first start's
        assert d.command("volume-down") == {"type": "ok"}
        wait_until(lambda: d.snapshot()["volume"] == pytest.approx(0.7), 10, "the volume a step down")
        mark = d.mark()
        d.signal(signal.SIGHUP)
        d.notify.wait(lambda m: m.get("READY") == "1", start=mark)
        assert d.snapshot()["volume"] == pytest.approx(0.7)  # a reload keeps it
        d.signal(signal.SIGTERM)
        assert d.wait() == 0, d.log()
    with start(workdir, audio_rig, config) as d:
        d.wait_ready()
        assert d.snapshot()["volume"] == pytest.approx(0.7)  # and so does a restart
        d.signal(signal.SIGTERM)
        assert d.wait() == 0, d.log()
