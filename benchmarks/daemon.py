"""Benchmarks of the whole daemon, on the bench of benchmarks/stack.py (virtual rig, stub SFU, real process):

- `startup_ratio`: time from exec to READY=1 on $NOTIFY_SOCKET, divided by the time of a bare
  `python -c "import livekit.rtc"` measured in the same run (medians of `--repeats` each).
- `press_to_listening_ms` (median) and `press_to_listening_ms_p95`: the daemon's own per-press metric (press →
  the agent first listening for that press), over `--sessions` sessions of `--turns` push-to-talk turns each, each
  session pressed after the device has been idle for 2 s (a press right after a session waits for the next
  session process). A session's first press waits for the agent to join: the stub agent's scripted delay
  (`--agent-delay` + its 0.5 s `initializing`) is subtracted from it; a later press finds the agent listening
  after its reply and is answered when its `start_turn` returns. `press_to_listening_first_ms*`: first presses
  only.
- `preroll_kept_ms`: how much audio from before the press reached the agent. A recorder on the virtual mic
  (parec, 10 ms latency) timestamps the mic's samples; the agent's `heard.wav` is located in that recording
  by cross-correlation; kept = (the mic sample at the press) − (heard.wav's first sample). DSP off for this
  session, so heard.wav is the mic sample for sample; `audio.preroll_ms` is 500.
- `idle_cpu_percent`, `idle_rss_mb`: the daemon with the mic open and no session, over `--seconds`, with its
  ready session process (`idle_rss_daemon_mb`: the daemon process alone). `idle_footprint_mb`: the same
  processes' resident pages with each physical page counted once (summed RSS counts the interpreter, numpy and
  the livekit library twice: both processes map them).
- `active_cpu_percent`: during a session (agent listening, speech playing into the mic), over `--seconds`;
  `active_cpu_inline_percent` the same with `session.process: inline` in the same run (no session process).
- The peers (benchmarks/peers.py), each joining the same stub with the same speech playing into the same mic,
  measured the same way: `active_cpu_mediadevices_percent` (a hello-wakeword-style client on `rtc.MediaDevices`,
  the daemon's DSP) and `active_cpu_platformaudio_percent` (`rtc.PlatformAudio`, WebRTC's device module);
  `active_cpu_ratio_vs_mediadevices` = ours / MediaDevices (at its own 48 kHz); when the daemon's pipeline runs
  at another rate, `*_mediadevices_at_our_rate_*` is the same peer at that rate too. The active windows of ours
  and the peers alternate for `--rounds` rounds; each figure is the median of its rounds (`*_each` keeps them).
- `*_pulseaudio_percent`: the virtual rig's sound server over the same windows. It is NOT in the figures above
  (nor in the peers'); it is reported so that work moved into the sound server (e.g. resampling for a device
  opened at another rate than the server's) shows.
- `idle_cpu_wake_ratio`: idle CPU with the wake word on (`session.mode: wake_word`, the listener and its speaker
  guard on the mic) against off (push_to_talk), the same config otherwise, alternating `--rounds` times in one run
  (medians of each; goal ≤ 1.3).
- `wake_to_listening_ms`: the daemon's own metric (the wake word's detection → the agent's `listening`), minus
  the stub agent's scripted delay as above; "okay nabu, what time is it" said into the idle device, median over
  `--sessions` conversations (each ended, then the device idle for 2 s).
CPU and RSS are of the daemon and its session processes together (utime+stime of all their threads, plus
children already reaped), from /proc; CPU as % of one core of this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.stack import Bench, cpu_percent, cpu_percents, footprint_bytes, proc_stats, tree_pids
from tests.wire.harness import PYTHON, LineProcess, mint_token

AGENT_DELAY_S = 0.5
IDLE_BEFORE_PRESS_S = 2.0


def startup(bench: Bench, repeats: int) -> dict[str, Any]:
    """exec → READY=1 of the daemon (no network needed at start) against a bare import of livekit.rtc."""
    imports, readies = [], []
    for _ in range(repeats):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "import livekit.rtc"], check=True, env=bench.env)
        imports.append(time.monotonic() - t0)
    for _ in range(repeats):
        config = bench.config("ws://127.0.0.1:9")
        daemon = bench.daemon(config, in_netns=False)
        t0 = daemon.started_at
        daemon.wait_ready()
        ready_at = next(t for t, m in daemon.notify.messages if m.get("READY") == "1")
        readies.append(ready_at - t0)
        daemon.signal(15)
        daemon.wait(timeout=10)
        daemon.close()
    imp, ready = statistics.median(imports), statistics.median(readies)
    return {"startup_ready_s": round(ready, 3), "import_livekit_rtc_s": round(imp, 3),
            "startup_ratio": round(ready / imp, 2)}


class MicRecorder:
    """parec on the virtual mic, keeping (monotonic arrival time, total samples so far) per chunk."""

    def __init__(self, pulse_server: str, rate: int) -> None:
        self.proc = subprocess.Popen(
            ["parec", "-d", "mic", f"--rate={rate}", "--channels=1", "--format=s16le", "--raw", "--latency-msec=10"],
            env={**os.environ, "PULSE_SERVER": pulse_server}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.chunks: list[bytes] = []
        self.marks: list[tuple[float, int]] = []
        self._n = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(4096):  # type: ignore[attr-defined]
            self.chunks.append(chunk)
            self._n += len(chunk) // 2
            self.marks.append((time.monotonic(), self._n))

    def index_at(self, t: float) -> int:
        """The mic sample that was arriving at monotonic time `t` (interpolated between chunk arrivals)."""
        times = np.array([m[0] for m in self.marks])
        counts = np.array([m[1] for m in self.marks])
        return int(np.interp(t, times, counts))

    def stop(self) -> np.ndarray:
        self.proc.terminate()
        self.proc.wait(timeout=5)
        self._thread.join(timeout=5)
        data = b"".join(self.chunks)
        return np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2")


def preroll_kept(bench: Bench, wav: Path) -> dict[str, Any]:
    from tests.wire.signals import find_lag, read_wav

    stub = bench.stub("--agent-delay", str(AGENT_DELAY_S), "--ptt")
    daemon = bench.daemon(bench.config(stub.url, dsp=False))
    daemon.wait_ready()
    rate = int(daemon.config["audio"].get("sample_rate", _audio_default("sample_rate")))
    recorder = MicRecorder(bench.pulse_server, rate)
    time.sleep(0.5)
    from tests.wire.rig import play_into_mic

    player = play_into_mic(bench.pulse_server, wav)
    time.sleep(1.0)  # the speech has been going on for a while when the button is pressed
    mark = daemon.mark()
    t_press = time.monotonic()
    daemon.command("press")
    daemon.wait_status("listening", timeout=30, start=mark)
    player.wait(timeout=30)
    daemon.command("release")
    daemon.wait_status("speaking", timeout=30, start=mark)
    daemon.command("end")
    daemon.wait_status("idle", timeout=30, start=mark)
    mic = recorder.stop()
    stub.control.flush()
    heard = read_wav(stub.session_dir(1) / "heard.wav")
    meta = json.loads((stub.session_dir(1) / "meta.json").read_text())
    seam = int(meta["live_first_sample_index"]) or len(heard)
    # heard.wav is at the buffer's rate, the pipeline's (the recorder records the mic at that rate too)
    assert int(meta["sample_rate"]) == rate, meta
    start_in_mic = find_lag(heard[: min(seam, rate)], mic)  # mic index of heard.wav's first sample
    press_in_mic = recorder.index_at(t_press)
    daemon.signal(15)
    daemon.wait(timeout=10)
    return {"preroll_kept_ms": round((press_in_mic - start_in_mic) * 1000 / rate, 1),
            "preroll_config_ms": bench.config("x")["audio"]["preroll_ms"],
            "preconnect_status": meta.get("preconnect_status")}


def session_figures(bench: Bench, wav: Path, sessions: int, turns: int, seconds: float, rounds: int
                    ) -> dict[str, Any]:
    stub = bench.stub("--agent-delay", str(AGENT_DELAY_S), "--ptt")
    config = bench.config(stub.url)
    daemon = bench.daemon(config)
    daemon.wait_ready()
    time.sleep(2.0)  # settle after start-up
    idle_cpu, idle_pulse = cpu_percents([daemon.pid, bench.pulse_pid], seconds)
    idle = proc_stats(daemon.pid)  # the daemon and its ready session process (session.process: warm)
    idle_footprint = footprint_bytes(tree_pids(daemon.pid))
    # active: a session with the agent listening while speech plays into the mic; the peers alternate with it
    long_wav = bench.speech_wav("This is a long request to measure the processor time of a live session. " * 3,
                                "long")
    rate = int(config["audio"].get("sample_rate", _audio_default("sample_rate")))
    peers = {"mediadevices": ("mediadevices", 48000), "platformaudio": ("platformaudio", 48000)}
    if rate != 48000:  # MediaDevices at the daemon's rate too: the same samples to process
        peers["mediadevices_at_our_rate"] = ("mediadevices", rate)
    windows: dict[str, list[tuple[float, float]]] = {"ours": [], **{k: [] for k in peers}}
    for r in range(rounds):
        windows["ours"].append(active_session_cpu(bench, daemon, long_wav, seconds))
        for name, (role, peer_rate) in peers.items():
            windows[name].append(peer_cpu(bench, stub, role, long_wav, seconds, config["audio"], f"{name}-{r}",
                                          peer_rate))
    agent_s = AGENT_DELAY_S + _agent_init_s()
    latencies, firsts = [], []
    for _ in range(sessions):
        spare_ready(daemon)
        time.sleep(IDLE_BEFORE_PRESS_S)
        metrics = bench.session(daemon, wav, turns=turns)
        each = [float(x) for x in metrics["press_to_listening_recent_ms"][-turns:]]
        each[0] -= agent_s * 1000
        firsts.append(each[0])
        latencies += each
    daemon.signal(15)
    daemon.wait(timeout=10)
    ours, md, pa = (statistics.median(c for c, _ in windows[k]) for k in ("ours", "mediadevices", "platformaudio"))
    same_rate = {}
    if "mediadevices_at_our_rate" in windows:
        md_rate = statistics.median(c for c, _ in windows["mediadevices_at_our_rate"])
        same_rate = {"active_cpu_mediadevices_at_our_rate_percent": round(md_rate, 2),
                     "active_cpu_ratio_vs_mediadevices_at_our_rate": round(ours / max(0.01, md_rate), 2)}
    return {
        "idle_cpu_percent": round(idle_cpu, 2), "idle_rss_mb": round(idle["rss_bytes"] / 2**20, 1),
        "idle_rss_daemon_mb": round(idle["daemon_rss_bytes"] / 2**20, 1), "idle_processes": idle["processes"],
        "idle_footprint_mb": round(idle_footprint / 2**20, 1),
        "idle_cpu_pulseaudio_percent": round(idle_pulse, 2),
        "active_cpu_percent": round(ours, 2),
        "active_cpu_mediadevices_percent": round(md, 2),
        "active_cpu_platformaudio_percent": round(pa, 2),
        "active_cpu_ratio_vs_mediadevices": round(ours / max(0.01, md), 2),
        "active_cpu_ratio_vs_platformaudio": round(ours / max(0.01, pa), 2),
        "pipeline_rate": rate,
        **same_rate,
        **{f"active_cpu_{k}_each": [round(c, 2) for c, _ in v] for k, v in windows.items()},
        **{f"active_cpu_{k}_pulseaudio_percent": round(statistics.median(p for _, p in v), 2)
           for k, v in windows.items()},
        "press_to_listening_ms": round(statistics.median(latencies), 1),
        "press_to_listening_ms_p95": round(float(np.percentile(latencies, 95)), 1),
        "press_to_listening_first_ms_p50": round(statistics.median(firsts), 1),
        "press_to_listening_first_ms_p95": round(float(np.percentile(firsts, 95)), 1),
        "press_to_listening_ms_each": [round(x, 1) for x in latencies],
        "press_to_listening_turns_per_session": turns,
        "agent_delay_subtracted_ms": round(agent_s * 1000),
    }


def spare_ready(daemon: Any, timeout: float = 30.0) -> None:
    """Until the daemon's next session process has said it is ready (more `ready` children than sessions so far):
    a press then measures a warm device, not the import of the child started when the last session ended (slower
    than IDLE_BEFORE_PRESS_S on a loaded machine)."""
    from tests.polling import wait_for

    def ready() -> bool:
        log = daemon.log()
        return log.count("session process ready") > log.count(" attempt=1 ")

    wait_for(ready, timeout, "a ready session process")


def active_session_cpu(bench: Bench, daemon: Any, wav: Path, seconds: float) -> tuple[float, float]:
    """% of a core, daemon and session process together (and the sound server's), while the agent listens and
    speech plays into the mic."""
    from tests.wire.rig import play_into_mic

    mark = daemon.mark()
    daemon.command("start")  # not a held press: the button's 10 s hold would end the session inside the window
    daemon.wait_status("listening", timeout=30, start=mark)
    player = play_into_mic(bench.pulse_server, wav)
    cpu, pulse = cpu_percents([daemon.pid, bench.pulse_pid], seconds)
    player.kill()
    daemon.command("end")
    daemon.wait_status("idle", timeout=30, start=mark + 1)
    return cpu, pulse


def peer_cpu(bench: Bench, stub: Any, role: str, wav: Path, seconds: float, audio: dict[str, Any], name: str,
             rate: int = 48000) -> tuple[float, float]:
    """The same window for a peer client (benchmarks/peers.py) in a fresh room of the same stub."""
    from tests.wire.rig import play_into_mic

    dsp = [flag for flag, key in (("aec", "echo_cancellation"), ("ns", "noise_suppression"),
                                  ("hpf", "high_pass_filter"), ("agc", "auto_gain_control"))
           if audio.get(key, _audio_default(key))]
    token = mint_token(identity=f"peer-{name}", room=f"peer-{name}")
    env = {**os.environ, "PULSE_SERVER": bench.pulse_server, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    assert bench.netns is not None
    peer = LineProcess(bench.netns.command([PYTHON, "-m", "benchmarks.peers", "--role", role, "--url", stub.url,
                                            "--token", token, "--dsp", ",".join(dsp), "--rate", str(rate)]),
                       bench.workdir / f"peer-{name}.log", env=env)
    try:
        peer.wait_line(lambda line: line == "ready", timeout=40)
        player = play_into_mic(bench.pulse_server, wav)
        cpu, pulse = cpu_percents([peer.proc.pid, bench.pulse_pid], seconds)
        player.kill()
    finally:
        peer.stop()
    return cpu, pulse


def _audio_default(key: str) -> Any:
    from device.config.schema import AudioConfig

    return getattr(AudioConfig(), key)


def inline_peer(bench: Bench, wav: Path, seconds: float) -> dict[str, Any]:
    """The same active session with `session.process: inline` (no session process), in the same run."""
    stub = bench.stub("--agent-delay", str(AGENT_DELAY_S), "--ptt")
    config = bench.config(stub.url)
    config["session"]["process"] = "inline"
    daemon = bench.daemon(config)
    daemon.wait_ready()
    time.sleep(2.0)
    cpu, _ = active_session_cpu(bench, daemon, wav, seconds)
    daemon.signal(15)
    daemon.wait(timeout=10)
    return {"active_cpu_inline_percent": round(cpu, 2)}


def wake_config(bench: Bench, url: str) -> dict[str, Any]:
    config = bench.config(url, mode="wake_word")
    config["wake_word"] = {"models": ["okay_nabu"], "follow_up_s": 30}
    return config


def wake_word_idle(bench: Bench, seconds: float, rounds: int) -> dict[str, Any]:
    """Idle CPU, wake word on against off, the two alternating (this machine's load drifts)."""
    on, off = [], []
    for _ in range(rounds):
        for cpus, config in ((on, wake_config(bench, "ws://127.0.0.1:9")), (off, bench.config("ws://127.0.0.1:9"))):
            daemon = bench.daemon(config, in_netns=False)
            daemon.wait_ready()
            time.sleep(2.0)  # settle after start-up (its ready session process imports livekit meanwhile)
            cpus.append(cpu_percent(daemon.pid, seconds))
            daemon.signal(15)
            daemon.wait(timeout=10)
            daemon.close()
    cpu_on, cpu_off = statistics.median(on), statistics.median(off)
    return {"idle_cpu_wake_on_percent": round(cpu_on, 2), "idle_cpu_wake_off_percent": round(cpu_off, 2),
            "idle_cpu_wake_ratio": round(cpu_on / max(0.01, cpu_off), 2),
            "idle_cpu_wake_each": {"on": [round(x, 2) for x in on], "off": [round(x, 2) for x in off]}}


def wake_to_listening(bench: Bench, sessions: int) -> dict[str, Any]:
    """The wake word said into the idle device → the agent listening, the agent's scripted delay subtracted."""
    from tests.wire.rig import play_into_mic

    stub = bench.stub("--agent-delay", str(AGENT_DELAY_S))
    daemon = bench.daemon(wake_config(bench, stub.url))
    daemon.wait_ready()
    wav = bench.speech_wav("okay nabu, what time is it", "wake", voice="en-us")
    time.sleep(2.0)
    agent_ms = (AGENT_DELAY_S + _agent_init_s()) * 1000
    each = []
    for _ in range(sessions):
        mark = daemon.mark()
        player = play_into_mic(bench.pulse_server, wav)
        daemon.wait_status("listening", timeout=30, start=mark)
        player.wait(timeout=30)
        daemon.command("end")
        daemon.wait_status("idle", timeout=30, start=mark)
        each.append(float(daemon.snapshot()["conversations"]["wake_to_listening"]["last_ms"]) - agent_ms)
        time.sleep(IDLE_BEFORE_PRESS_S)
    daemon.signal(15)
    daemon.wait(timeout=10)
    return {"wake_to_listening_ms": round(statistics.median(each), 1),
            "wake_to_listening_ms_each": [round(x, 1) for x in each]}


def _agent_init_s() -> float:
    from tests.stubsfu.agent import AgentConfig

    return float(AgentConfig().init_s)


def wake_figures(bench: Bench, seconds: float, sessions: int, rounds: int) -> dict[str, Any]:
    """`idle_cpu_wake_ratio` and `wake_to_listening_ms` (benchmarks/wakeword.py measures the detector alone:
    `wake_cpu_ratio_vs_livekit_wakeword`)."""
    return {**wake_word_idle(bench, seconds, rounds), **wake_to_listening(bench, sessions)}


def run(seconds: float = 10.0, sessions: int = 5, repeats: int = 3, turns: int = 2, rounds: int = 2
        ) -> dict[str, Any]:
    with Bench() as bench:
        wav = bench.speech_wav("What is the weather like today?", "question")
        result: dict[str, Any] = {}
        result.update(startup(bench, repeats))
        result.update(session_figures(bench, wav, sessions, turns, seconds, rounds))
        result.update(wake_figures(bench, seconds, sessions, rounds))
        long_wav = bench.workdir / "long.wav"
        result.update(inline_peer(bench, long_wav, seconds))
        result["active_cpu_ratio_vs_inline"] = round(result["active_cpu_percent"]
                                                     / max(0.01, result["active_cpu_inline_percent"]), 2)
        speech = bench.speech_wav("Hello there, this sentence starts well before the button is pressed, "
                                  "and it goes on while the agent joins the room.", "preroll")
        result.update(preroll_kept(bench, speech))
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    return result


ROWS = [
    ("press → agent listening, every press (agent delay subtracted), median", "press_to_listening_ms", "{:.0f} ms"),
    ("press → agent listening, every press, p95", "press_to_listening_ms_p95", "{:.0f} ms"),
    ("press → agent listening, first press of a session, median / p95",
     ("press_to_listening_first_ms_p50", "press_to_listening_first_ms_p95"), "{:.0f} / {:.0f} ms"),
    ("pre-roll kept (audio before the press that reached the agent)", "preroll_kept_ms", "{:.0f} ms"),
    ("daemon idle CPU (mic open, no session)", "idle_cpu_percent", "{:.1f} % of a core"),
    ("daemon idle CPU, wake word on / off (same run)", "idle_cpu_wake_on_percent", "{:.1f} % of a core"),
    ("idle CPU ratio wake word on / off (goal ≤ 1.3)", "idle_cpu_wake_ratio", "{:.2f}"),
    ("wake word → agent listening (agent delay subtracted, median)", "wake_to_listening_ms", "{:.0f} ms"),
    ("daemon idle RSS (with its ready session process)", "idle_rss_mb", "{:.1f} MB"),
    ("daemon idle RSS (the daemon process alone)", "idle_rss_daemon_mb", "{:.1f} MB"),
    ("daemon idle footprint (both, each shared page once)", "idle_footprint_mb", "{:.1f} MB"),
    ("daemon active-session CPU (with its session process)", "active_cpu_percent", "{:.1f} % of a core"),
    ("peer on rtc.MediaDevices, same stub and speech", "active_cpu_mediadevices_percent", "{:.1f} % of a core"),
    ("peer on rtc.PlatformAudio, same stub and speech", "active_cpu_platformaudio_percent", "{:.1f} % of a core"),
    ("active-session CPU ratio ours / MediaDevices", "active_cpu_ratio_vs_mediadevices", "{:.2f}"),
    ("peer on rtc.MediaDevices at our pipeline rate / ratio",
     ("active_cpu_mediadevices_at_our_rate_percent", "active_cpu_ratio_vs_mediadevices_at_our_rate"),
     "{:.1f} % of a core / {:.2f}"),
    ("sound server during ours / MediaDevices / idle (not counted above)",
     ("active_cpu_ours_pulseaudio_percent", "active_cpu_mediadevices_pulseaudio_percent",
      "idle_cpu_pulseaudio_percent"), "{:.1f} / {:.1f} / {:.1f} %"),
    ("the same with session.process: inline (same run)", "active_cpu_inline_percent", "{:.1f} % of a core"),
    ("active-session CPU ratio process-per-session / inline", "active_cpu_ratio_vs_inline", "{:.2f}"),
    ("start-up to READY=1", "startup_ready_s", "{:.2f} s"),
    ("bare `import livekit.rtc`", "import_livekit_rtc_s", "{:.2f} s"),
    ("start-up ratio (READY=1 / import livekit.rtc)", "startup_ratio", "{:.2f}"),
]


def cell(result: dict[str, Any], key: str | tuple[str, ...], fmt: str) -> str:
    keys = (key,) if isinstance(key, str) else key
    if any(k not in result for k in keys):  # a figure this run did not make (e.g. no peer at another rate)
        return "—"
    return fmt.format(*(result[k] for k in keys))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=10.0, help="CPU measuring windows (default 10)")
    p.add_argument("--sessions", type=int, default=5, help="sessions for press → listening (default 5)")
    p.add_argument("--turns", type=int, default=2, help="push-to-talk turns in each of those sessions (default 2)")
    p.add_argument("--rounds", type=int, default=2, help="active windows of ours and each peer, and idle windows "
                                                          "with the wake word on and off, alternating (default 2; "
                                                          "medians)")
    p.add_argument("--repeats", type=int, default=3, help="start-ups and imports timed (default 3)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.daemon", description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    result = run(args.seconds, args.sessions, args.repeats, args.turns, args.rounds)
    width = max(len(label) for label, _, _ in ROWS)
    for label, key, fmt in ROWS:
        print(f"{label:<{width}}  {cell(result, key, fmt)}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
