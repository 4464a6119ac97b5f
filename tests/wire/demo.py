"""The demo behind `scripts/demo`: the daemon in --simulate mode talking to an echo agent, on any machine.

    scripts/demo [--headless] [--server auto|real|stub] [--record DIR] [--agent-delay SECONDS]
                 [--agent-reply echo|FILE] [--wake-word NAME]

What it brings up, and takes down again on Ctrl-C (or `q` in the terminal, or SIGTERM):
- audio: `PULSE_SERVER` when it is set; else the system's default devices when the machine has a sound card;
  else the virtual rig of scripts/virtual-audio.sh (its microphone hears what is played to its speaker `spk`),
  stopped on exit if this started it;
- the server: with LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET set, that LiveKit server (the daemon's
  config takes them from the environment); otherwise the stub SFU of tests/stubsfu with its echo agent, which
  offers the push-to-talk RPCs and answers each turn when the button is released. libwebrtc ignores loopback:
  as root the stub and the daemon run in a private network namespace (tests/stubsfu/netns.py), otherwise the stub
  listens on a non-loopback address of this machine;
- the daemon: `voice-device run --config config/demo.yaml --simulate` (space = press/release, q = quit, the LED
  drawn in the terminal); with --headless it reads no keys and is driven through its control socket
  (`voice-device ctl press --socket PATH`);
- with --wake-word NAME (a built-in wake word or a microWakeWord JSON file): the same config in
  `session.mode: wake_word` listening for NAME (written next to the logs), and the agent (the stub's or the real
  test agent) taking turns by its own voice detection instead of the push-to-talk RPCs. No button is needed: say
  the wake word and what you want in one breath; the conversation ends by itself when nobody speaks in the
  follow-up window.

It prints the control socket, the PULSE_SERVER in use and where the logs are. Exit status: the daemon's (0 after
Ctrl-C), 1 when something could not be brought up (with one sentence saying why).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CONFIG = ROOT / "config" / "demo.yaml"
RIG_SCRIPT = ROOT / "scripts" / "virtual-audio.sh"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class DemoError(Exception):
    """Something the demo could not bring up; the message is one sentence saying what to do."""


def say(text: str, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    out.write(f"demo: {text}\n")
    out.flush()


# ---- audio ----------------------------------------------------------------------------------------------------


def has_sound_card() -> bool:
    try:
        return any(line[:3].strip().isdigit() for line in Path("/proc/asound/cards").read_text().splitlines())
    except OSError:
        return False


class Audio:
    """Which sound devices the daemon uses; `close()` stops the virtual rig if `open()` started it."""

    def __init__(self) -> None:
        self.pulse_server: str | None = os.environ.get("PULSE_SERVER") or None
        self.rig_started = False
        self.virtual = False

    def open(self) -> None:
        if self.pulse_server or has_sound_card():
            return
        status = subprocess.run(["bash", str(RIG_SCRIPT), "status"], capture_output=True, text=True, timeout=30)
        if status.returncode != 0:
            started = subprocess.run(["bash", str(RIG_SCRIPT), "start"], capture_output=True, text=True, timeout=300)
            if started.returncode != 0:
                raise DemoError(f"the virtual audio rig did not start: {started.stderr.strip().splitlines()[-1:]}")
            self.rig_started = True
        env_line = subprocess.run(["bash", str(RIG_SCRIPT), "env"], capture_output=True, text=True, timeout=30)
        self.pulse_server = env_line.stdout.strip().split("PULSE_SERVER=", 1)[1]
        self.virtual = True

    def env(self) -> dict[str, str]:
        return {"PULSE_SERVER": self.pulse_server} if self.pulse_server else {}

    def close(self) -> None:
        if self.rig_started:
            subprocess.run(["bash", str(RIG_SCRIPT), "stop"], capture_output=True, timeout=30)
            self.rig_started = False


# ---- network --------------------------------------------------------------------------------------------------


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine other than loopback (no packet is sent to find it)."""
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    return None


class Network:
    """Where the stub listens and how a process is started so that it can reach it."""

    def __init__(self) -> None:
        self.netns: Any = None
        self.host = ""

    def open(self) -> None:
        from tests.stubsfu.netns import NetNs, NetNsUnavailable

        if os.geteuid() == 0:
            try:
                self.netns = NetNs.create(prefix="vddemo")
                self.host = self.netns.server_ip
                return
            except NetNsUnavailable as e:
                say(f"no network namespace ({e}); trying an address of this machine")
        host = non_loopback_ipv4()
        if host is None:
            raise DemoError("libwebrtc ignores loopback and this machine has no other address: run the demo with "
                            "sudo (it then uses a private network namespace)")
        say(f"not root, so no private network namespace (libwebrtc ignores loopback): the stub listens on {host}, "
            "this machine's own address, for the length of the demo")
        self.host = host

    def command(self, argv: list[str]) -> list[str]:
        return self.netns.command(argv) if self.netns is not None else argv

    def close(self) -> None:
        if self.netns is not None:
            self.netns.delete()
            self.netns = None


# ---- processes ------------------------------------------------------------------------------------------------


def stop_process(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGINT,
                 timeout: float = STOP_TIMEOUT_S) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if the demo itself is killed (e.g. SIGKILL) before it could stop it."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def start_stub(network: Network, args: argparse.Namespace, logs: Path) -> tuple[subprocess.Popen[str], str]:
    turns = [] if args.wake_word else ["--ptt"]  # a wake-word conversation has no push-to-talk turns
    argv = [PYTHON, "-m", "tests.stubsfu", "--host", network.host, "--port", "0", *turns,
            "--agent-delay", str(args.agent_delay), "--agent-reply", args.agent_reply, "--agent-name", "demo-agent"]
    if args.record:
        argv += ["--record", str(args.record)]
    log = (logs / "stub.log").open("w")
    # its own session: Ctrl-C reaches the daemon first, and the stub is stopped after it has left the room
    proc = subprocess.Popen(network.command(argv), cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=die_with_parent)
    log.close()
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    os.set_blocking(proc.stdout.fileno(), True)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("stubsfu ready"):
            url = line.split("url=", 1)[1].split()[0]
            return proc, url
    stop_process(proc)
    tail = "\n".join((logs / "stub.log").read_text(errors="replace").splitlines()[-5:])
    raise DemoError(f"the stub SFU did not start; its log ({logs / 'stub.log'}) ends with:\n{tail}")


def wait_until_ready(daemon: subprocess.Popen[Any], control_socket: str, log_path: Path,
                     stopping: Callable[[], bool]) -> None:
    from device.daemon.client import ClientError, ControlClient

    deadline = time.monotonic() + READY_TIMEOUT_S
    while not stopping():
        if daemon.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-8:])
            raise DemoError(f"the daemon exited (status {daemon.returncode}); its log ({log_path}) ends with:\n{tail}")
        try:
            with ControlClient(control_socket, timeout_s=2.0) as client:
                client.snapshot()
            return
        except ClientError:
            if time.monotonic() > deadline:
                raise DemoError(f"the daemon did not open its control socket within {READY_TIMEOUT_S:.0f} s; "
                                f"see {log_path}") from None
            time.sleep(0.2)


def resolve_control_socket(config: Path) -> str:
    from device.config import ConfigError, load_config

    try:
        return load_config(str(config)).daemon.control_socket
    except ConfigError as e:
        raise DemoError(f"{config.name} does not load: {e}") from None


def wake_word_config(name: str, logs: Path) -> Path:
    """config/demo.yaml in `session.mode: wake_word`, listening for `name` (its ${...} left for the daemon)."""
    import yaml

    config = yaml.safe_load(CONFIG.read_text())
    config["session"]["mode"] = "wake_word"
    config["wake_word"] = {"models": [name], "follow_up_s": 8}
    path = logs / "demo-wake-word.yaml"
    path.write_text(f"# config/demo.yaml in the wake_word mode (scripts/demo --wake-word {name})\n"
                    + yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)  # like any config that may name a secret
    return path


def check_wake_word(name: str) -> str | None:
    """None if `name` is a usable wake word, else the sentence saying why not."""
    from device.config.wake_models import ModelSpecError, describe

    try:
        describe(name, Path.cwd())
    except ModelSpecError as e:
        return str(e)
    return None


# ---- the demo -------------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/demo", description="voice-device demo: the daemon with a simulated "
                                "button talking to an echo agent (or to LIVEKIT_URL when it is set)")
    p.add_argument("--headless", action="store_true",
                   help="no terminal UI: drive the daemon through its control socket (voice-device ctl press ...)")
    p.add_argument("--record", type=Path, metavar="DIR",
                   help="the agent writes what it heard here (session-N/heard.wav, meta.json); on the virtual rig "
                        "what the speaker played goes to DIR/speaker.wav")
    p.add_argument("--agent-delay", type=float, default=2.0, metavar="SECONDS",
                   help="the echo agent joins this long after the device (default 2)")
    p.add_argument("--server", choices=("auto", "real", "stub"), default="auto",
                   help="auto (default): the real livekit-server and agent when scripts/livekit-server.sh has built "
                        "the server (needs root), else the stub SFU; real or stub forces one")
    p.add_argument("--agent-reply", default="echo", metavar="echo|FILE",
                   help="the agent answers with an echo of your turn (default) or with this WAV file")
    p.add_argument("--wake-word", metavar="NAME",
                   help="run the smart speaker's wake_word mode listening for NAME (okay_nabu, hey_jarvis, alexa, "
                        "hey_mycroft, or a microWakeWord JSON file): no button, say the wake word")
    return p


def real_server() -> bool:
    return all(os.environ.get(k) for k in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"))


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.audio = Audio()
        self.network = Network()
        self.stub: subprocess.Popen[str] | None = None
        self.real: Any = None  # tests.livekit.demo_stack.RealStack, when the real server runs
        self.daemon: subprocess.Popen[bytes] | None = None
        self.speaker: subprocess.Popen[bytes] | None = None
        self.stop_requested = False
        self.logs = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / "voice-device-demo"

    def request_stop(self, signum: int, _frame: Any) -> None:
        self.stop_requested = True

    def run(self) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.args.record:
            self.args.record.mkdir(parents=True, exist_ok=True)
            self.args.record = self.args.record.resolve()
        self.audio.open()
        env = {**os.environ, **self.audio.env(), "PYTHONUNBUFFERED": "1"}
        if real_server():
            server = f"LiveKit server {os.environ['LIVEKIT_URL']} (from LIVEKIT_URL)"
            start: Callable[[list[str]], list[str]] = lambda argv: argv  # noqa: E731
        elif (why_not := self.real_stack_unavailable()) is None:
            from tests.livekit.demo_stack import RealStack

            self.real = RealStack(self.logs, record=self.args.record)
            real_env = self.real.open()
            os.environ.update(real_env)
            env.update(real_env)
            server = (f"livekit-server {real_env['LIVEKIT_URL']} (built by scripts/livekit-server.sh) with the test "
                      f"agent {real_env['VOICE_DEVICE_AGENT']} (recording STT, espeak-ng voice)")
            start = self.real.command
        else:
            if self.args.server == "auto":
                say(f"the real livekit-server is not used: {why_not}; using the stub SFU")
            self.network.open()
            self.stub, url = start_stub(self.network, self.args, self.logs)
            os.environ["VOICE_DEVICE_DEMO_URL"] = env["VOICE_DEVICE_DEMO_URL"] = url
            delay = f"{self.args.agent_delay:g} s"
            server = f"stub SFU {url}, echo agent joining {delay} after the device"
            start = self.network.command
        config = wake_word_config(self.args.wake_word, self.logs) if self.args.wake_word else CONFIG
        control = resolve_control_socket(config)
        self.banner(server, control)
        if self.audio.virtual and self.args.record:
            self.speaker = subprocess.Popen(
                ["parec", "-d", "spk.monitor", "--file-format=wav", "--format=s16le", "--channels=1", "--rate=48000",
                 str(self.args.record / "speaker.wav")],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        daemon_log = self.logs / "daemon.log"
        with daemon_log.open("w") as log:
            self.daemon = subprocess.Popen(
                start([PYTHON, "-m", "device", "run", "--config", str(config), "--simulate"]), cwd=ROOT, env=env,
                stdin=subprocess.DEVNULL if self.args.headless else None, stderr=log, preexec_fn=die_with_parent)
        wait_until_ready(self.daemon, control, daemon_log, lambda: self.stop_requested)
        if self.args.headless:
            say("ready (headless)")
        while self.daemon.poll() is None and not self.stop_requested:
            time.sleep(0.2)
        code = stop_process(self.daemon) or 0
        self.daemon = None
        return code

    def real_stack_unavailable(self) -> str | None:
        if self.args.server == "stub":
            return "--server stub"
        from tests.livekit.demo_stack import RealStack

        why = RealStack.unavailable()
        if why and self.args.server == "real":
            raise DemoError(f"--server real: {why}")
        return why

    def banner(self, server: str, control: str) -> None:
        pulse = self.audio.pulse_server or "<unset: the system's default devices>"
        lines = [
            f"server:         {server}",
            f"control socket: {control}",
            f"PULSE_SERVER={pulse}",
            f"logs:           {self.logs}/daemon.log" + ("" if real_server() or self.real
                                                         else f", {self.logs}/stub.log"),
        ]
        if self.args.record:
            lines.append(f"recordings:     {self.args.record}")
        wake = self.args.wake_word
        if wake:
            lines.append(f"wake word:      {wake} (session.mode: wake_word; config {self.logs}/demo-wake-word.yaml)")
        if self.audio.virtual:
            said = f"{Path(wake).stem.replace('_', ' ')}, what time is it" if wake else "Hello there"
            voice = "-v en-us " if wake else ""
            lines.append("no sound card: the virtual rig's microphone hears what is played to its speaker, e.g.")
            lines.append(f"  espeak-ng {voice}--stdout '{said}' | PULSE_SERVER={pulse} paplay -d spk")
        if wake:
            lines.append("say the wake word and what you want in one breath: no button needed. "
                         + ("Ctrl-C stops the demo." if self.args.headless else "q or Ctrl-C quits."))
        elif self.args.headless:
            lines.append(f"drive it: .venv/bin/voice-device ctl press --socket {control}   (then: ctl release)")
            lines.append("Ctrl-C stops the demo.")
        else:
            lines.append("press space, speak, press space again: the agent answers. q or Ctrl-C quits.")
        for line in lines:
            say(line)

    def close(self) -> None:
        """Everything this demo started, in reverse order; each step runs even if another failed."""
        steps: list[Callable[[], Any]] = [
            lambda: stop_process(self.daemon),
            lambda: stop_process(self.speaker),
            lambda: stop_process(self.stub),
            lambda: self.real and self.real.close(),
            self.network.close,
            self.audio.close,
        ]
        for step in steps:
            try:
                step()
            except Exception as e:  # cleanup goes on
                say(f"cleanup step failed: {e}", sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.agent_reply != "echo" and not Path(args.agent_reply).is_file():
        say(f"--agent-reply must be 'echo' or a WAV file; {args.agent_reply} does not exist", sys.stderr)
        return 2
    if args.agent_reply != "echo":
        args.agent_reply = str(Path(args.agent_reply).resolve())
    if args.agent_delay < 0:
        say("--agent-delay must not be negative", sys.stderr)
        return 2
    if args.wake_word:
        if (why := check_wake_word(args.wake_word)) is not None:
            say(f"--wake-word: {why}", sys.stderr)
            return 2
        if Path(args.wake_word).suffix == ".json":
            args.wake_word = str(Path(args.wake_word).resolve())
    demo = Demo(args)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, demo.request_stop)
    try:
        return demo.run()
    except DemoError as e:
        say(str(e), sys.stderr)
        return 1
    finally:
        # Ctrl-C during the cleanup must not leave a namespace or a PulseAudio behind
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        demo.close()
        say("stopped")


if __name__ == "__main__":
    sys.exit(main())
