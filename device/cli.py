"""The `voice-device` command line: argument parsing and dispatch only; each command's work lives in its layer.

Exit codes: 0 success, 1 a runtime failure a person must fix (message on stderr), 2 bad configuration or
usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from device import __version__

if TYPE_CHECKING:
    from device.config.schema import Config

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
DEFAULT_CONFIG = "/etc/voice-device/config.yaml"
DEFAULT_ENV_FILE = "/etc/voice-device/env"  # the unit's EnvironmentFile=

Handler = Callable[[argparse.Namespace], int]
Setup = Callable[[argparse.ArgumentParser], None]
_COMMANDS: dict[str, tuple[str, Setup, Handler]] = {}  # name → (help, arguments, handler)
_SETUPS: dict[Handler, Setup] = {}


def command(name: str, help: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _COMMANDS[name] = (help, _SETUPS.pop(fn, lambda p: None), fn)
        return fn

    return register


def arguments(setup: Setup) -> Callable[[Handler], Handler]:
    """The command's arguments (below `@command`, which takes them)."""
    def attach(fn: Handler) -> Handler:
        _SETUPS[fn] = setup
        return fn

    return attach


def parse_duration(text: str) -> timedelta:
    """`90`, `90s`, `10m`, `6h`, `1d` → timedelta."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        if t and t[-1] in units:
            return timedelta(seconds=float(t[:-1]) * units[t[-1]])
        return timedelta(seconds=float(t))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 90s, 10m, 6h)") from None


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help=f"YAML configuration (default {DEFAULT_CONFIG})")


def load_or_exit(path: str, env: dict[str, str] | None = None) -> Config:
    """Load the config or print the one-line error and exit 2 (no traceback)."""
    from device.config import ConfigError, load_config

    try:
        return load_config(path, env=env)
    except ConfigError as e:
        print(f"voice-device: {e}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _check_args(p: argparse.ArgumentParser) -> None:
    _config_arg(p)
    p.add_argument("--env", metavar="FILE", help="read this systemd EnvironmentFile first, as the service does "
                   f"(default {DEFAULT_ENV_FILE} when checking {DEFAULT_CONFIG})")


def check_environment(args: argparse.Namespace) -> dict[str, str]:
    """This environment plus the env file the service gets (`--env`, or the installed one for the installed
    config); a file that cannot be read is said once, the check goes on without it."""
    import os

    from device.config.placeholders import read_env_file

    env = dict(os.environ)
    path = args.env or (DEFAULT_ENV_FILE if args.config == DEFAULT_CONFIG and os.path.exists(DEFAULT_ENV_FILE)
                        else None)
    if path is None:
        return env
    try:
        env.update(read_env_file(path))
    except (OSError, UnicodeDecodeError) as e:
        print(f"voice-device: cannot read {path} ({getattr(e, 'strerror', None) or e}): the secrets the service "
              "gets are not checked (run it with sudo)", file=sys.stderr)
    return env


@command("check", "validate a configuration and print it resolved, secrets masked")
@arguments(_check_args)
def cmd_check(args: argparse.Namespace) -> int:
    import yaml

    from device.config.display import to_dict
    from device.config.placeholders import placeholders

    config = load_or_exit(args.config, env=check_environment(args))
    problems = placeholders(config)
    for problem in problems:
        print(f"voice-device: {problem}", file=sys.stderr)
    if problems:
        return EXIT_CONFIG
    print(f"# {config.source}: valid", file=sys.stderr)
    print(yaml.safe_dump(to_dict(config, mask=True), sort_keys=False, default_flow_style=False), end="")
    return EXIT_OK


def _devices_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list")


@command("devices", "list audio inputs and outputs as PortAudio sees them")
@arguments(_devices_args)
def cmd_devices(args: argparse.Namespace) -> int:
    from device.audio.devices import list_devices

    devices = list_devices()
    if args.json:
        print(json.dumps([d.as_json() for d in devices], indent=2))
        return EXIT_OK
    if not devices:
        print("no audio devices found (no sound card, or PulseAudio not running)", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{'idx':>3}  {'in':>2} {'out':>3}  {'rate':>6}  name")
    for d in devices:
        marks = ("  [default input]" if d.is_default_input else "") + (
            "  [default output]" if d.is_default_output else ""
        )
        print(
            f"{d.index:>3}  {d.max_input_channels:>2} {d.max_output_channels:>3}  "
            f"{int(d.default_sample_rate):>6}  {d.name}{marks}"
        )
    return EXIT_OK


def _token_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--room", required=True)
    p.add_argument("--identity", required=True)
    p.add_argument("--name")
    p.add_argument("--agent", help="agent name to dispatch through room_config")
    p.add_argument("--ttl", type=parse_duration, default=timedelta(minutes=10), help="lifetime, e.g. 10m, 6h")
    p.add_argument("--api-key", help="default: $LIVEKIT_API_KEY")
    p.add_argument("--api-secret", help="default: $LIVEKIT_API_SECRET")


@command("token", "development helper: mint a participant token (the secret belongs on a token server)")
@arguments(_token_args)
def cmd_token(args: argparse.Namespace) -> int:
    import os

    from device.session.mint import mint_token

    key = args.api_key or os.environ.get("LIVEKIT_API_KEY")
    secret = args.api_secret or os.environ.get("LIVEKIT_API_SECRET")
    if not key or not secret:
        print("voice-device: token needs --api-key and --api-secret (or LIVEKIT_API_KEY / LIVEKIT_API_SECRET)",
              file=sys.stderr)
        return EXIT_CONFIG
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short development keys such as livekit-server --dev's "secret"
        print(mint_token(key, secret, room=args.room, identity=args.identity, name=args.name,
                         agent_name=args.agent, ttl=args.ttl))
    return EXIT_OK


@command("version", "print the version")
def cmd_version(args: argparse.Namespace) -> int:
    print(f"voice-device {__version__}")
    return EXIT_OK


def _control_socket_args(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--socket", help="the daemon's control socket (default: daemon.control_socket of the config)")
    where.add_argument("--config", "-c", help=f"read daemon.control_socket from this YAML (default {DEFAULT_CONFIG} "
                       "when readable, else /run/voice-device/control.sock)")


def control_socket_path(args: argparse.Namespace) -> str:
    """--socket, else the config's daemon.control_socket, else the default one."""
    import os

    from device.config import ConfigError, DaemonConfig, load_config

    if args.socket:
        return str(args.socket)
    if args.config:
        return load_or_exit(args.config).daemon.control_socket
    if os.access(DEFAULT_CONFIG, os.R_OK):  # readable by root and the voice-device group only
        try:
            return load_config(DEFAULT_CONFIG).daemon.control_socket
        except ConfigError:
            pass
    return DaemonConfig().control_socket


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--follow", "-f", action="store_true", help="keep printing each state change")
    p.add_argument("--json", action="store_true", help="print the daemon's JSON messages, one per line")
    _control_socket_args(p)


@command("status", "show the running daemon's state and metrics (--follow for live changes)")
@arguments(_status_args)
def cmd_status(args: argparse.Namespace) -> int:
    from device.daemon.client import ClientError, ControlClient, format_snapshot, format_state

    try:
        with ControlClient(control_socket_path(args)) as client:
            snapshot = client.snapshot()
            print(json.dumps(snapshot) if args.json else format_snapshot(snapshot), flush=True)
            if args.follow:
                for message in client.follow():
                    if message.get("type") == "state":
                        print(json.dumps(message) if args.json else format_state(message), flush=True)
    except ClientError as e:
        print(f"voice-device: {e}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _ctl_args(p: argparse.ArgumentParser) -> None:
    from device.daemon.commands import names

    p.add_argument("action", choices=names(), help="press/release work only when the daemon runs with --simulate")
    p.add_argument("text", nargs="*", help="what the agent should say (say only)")
    _control_socket_args(p)


def _ctl_help() -> str:
    from device.daemon.commands import COMMANDS

    plain = [f"{n} TEXT" if c.takes_text else n for n, c in COMMANDS.items() if not c.simulate_only]
    simulated = [n for n, c in COMMANDS.items() if c.simulate_only]
    return f"drive the running daemon: {', '.join(plain)} ({', '.join(simulated)} with --simulate)"


@command("ctl", _ctl_help())
@arguments(_ctl_args)
def cmd_ctl(args: argparse.Namespace) -> int:
    from device.daemon.client import ClientError, ControlClient
    from device.daemon.commands import COMMANDS, Command

    takes_text = COMMANDS[args.action].takes_text
    if takes_text and not args.text:
        print(f"voice-device: ctl {args.action} needs the text to say, e.g. voice-device ctl {args.action} Hello there",
              file=sys.stderr)
        return EXIT_CONFIG
    if not takes_text and args.text:
        print(f"voice-device: ctl {args.action} takes no text", file=sys.stderr)
        return EXIT_CONFIG
    try:
        with ControlClient(control_socket_path(args)) as client:
            client.snapshot()
            reply = client.command(Command(args.action, " ".join(args.text)).to_json())
    except ClientError as e:
        print(f"voice-device: {e}", file=sys.stderr)
        return EXIT_FAILURE
    if reply.get("type") != "ok":
        print(f"voice-device: {reply.get('message') or 'the daemon refused the command'}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _audio_test_args(p: argparse.ArgumentParser) -> None:
    _config_arg(p)
    p.add_argument("--seconds", type=float, default=5.0, help="how long to record (default 5)")
    p.add_argument("--loopback", action="store_true", help="play a chirp and report the round-trip latency in ms")


@command("audio-test", "record with a live level meter and play it back, or measure the round trip (--loopback)")
@arguments(_audio_test_args)
def cmd_audio_test(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from device.config.schema import AudioConfig
    from device.tools.audio_check import loopback, record_and_play

    if args.config == DEFAULT_CONFIG and not os.path.exists(args.config):
        audio = AudioConfig()  # no installed config yet: the defaults (system default devices)
    else:
        audio = load_or_exit(args.config).audio
    if not 0 < args.seconds <= 600:
        print("voice-device: --seconds must be between 0 and 600", file=sys.stderr)
        return EXIT_CONFIG
    run = loopback(audio) if args.loopback else record_and_play(audio, args.seconds)
    return asyncio.run(run)


def _wake_test_args(p: argparse.ArgumentParser) -> None:
    _config_arg(p)
    p.add_argument("--seconds", type=float, default=30.0, help="how long to listen (default 30)")
    p.add_argument("--model", action="append", metavar="NAME|PATH",
                   help="a built-in wake word or a microWakeWord JSON file (repeatable; default: wake_word.models)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between score lines (default 1)")


@command("wake-test", "live wake-word scores from the microphone, to tune wake_word.models and cutoffs")
@arguments(_wake_test_args)
def cmd_wake_test(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    import os

    from device.config.schema import AudioConfig, WakeWordConfig
    from device.config.wake_models import ModelSpecError, describe, is_path
    from device.tools.wake_scores import wake_test

    if args.config == DEFAULT_CONFIG and not os.path.exists(args.config):
        audio, wake = AudioConfig(), WakeWordConfig()  # no installed config yet: the defaults
    else:
        config = load_or_exit(args.config)
        audio, wake = config.audio, config.wake_word
    if not 0 < args.seconds <= 3600 or not 0.1 <= args.interval <= 60:
        print("voice-device: --seconds must be between 0 and 3600 and --interval between 0.1 and 60", file=sys.stderr)
        return EXIT_CONFIG
    if args.model:
        try:
            models = [describe(m, Path.cwd()) for m in args.model]  # a bad one is named now, not mid-test
        except ModelSpecError as e:
            print(f"voice-device: --model: {e}", file=sys.stderr)
            return EXIT_CONFIG
        specs = tuple(str(d.json_path) if is_path(m) else m for m, d in zip(args.model, models, strict=True))
        cutoffs = {k: v for k, v in wake.cutoffs.items() if k in {d.name for d in models}}
        wake = dataclasses.replace(wake, models=specs, cutoffs=cutoffs)
    return asyncio.run(wake_test(audio, wake, args.seconds, args.interval))


def _gpio_test_args(p: argparse.ArgumentParser) -> None:
    _config_arg(p)
    p.add_argument("--simulate", action="store_true",
                   help="mock pins driven from the keyboard (space press/release, m mute, q quit)")


@command("gpio-test", "check the wiring: light each LED in turn and print each button gesture (q or Ctrl-C ends)")
@arguments(_gpio_test_args)
def cmd_gpio_test(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from device.config.schema import ButtonConfig, ControlsConfig, LedsConfig
    from device.tools.gpio_check import run_gpio_test

    if args.simulate and args.config == DEFAULT_CONFIG and not os.path.exists(args.config):
        # No installed config yet: simulate a button on GPIO17 and an RGB LED so there is something to see.
        controls = ControlsConfig(button=ButtonConfig(), leds=LedsConfig(kind="rgbled", pins=(5, 6, 13)))
    else:
        controls = load_or_exit(args.config).controls
    return asyncio.run(run_gpio_test(controls, simulate=args.simulate))


def _run_args(p: argparse.ArgumentParser) -> None:
    _config_arg(p)
    p.add_argument("--simulate", action="store_true",
                   help="mock GPIO pins driven from the keyboard (space = press/release, m = mute, q = quit)")


@command("run", "run the daemon (what systemd starts)")
@arguments(_run_args)
def cmd_run(args: argparse.Namespace) -> int:
    from device.daemon.app import run

    return run(args.config, simulate=args.simulate, verbosity=args.verbose - args.quiet)


def _say_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", nargs="+", help="the text to send to the agent (lk.chat)")
    _control_socket_args(p)


@command("say", "send typed text to the agent through the running daemon (same as ctl say)")
@arguments(_say_args)
def cmd_say(args: argparse.Namespace) -> int:
    args.action = "say"
    return cmd_ctl(args)


# Commands of later layers go above this line, each importing its layer inside the handler (start-up stays fast).


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-device", description="LiveKit voice-agent device daemon")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeatable)")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less log output (repeatable)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_text, setup, fn) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        setup(p)
        p.set_defaults(handler=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from device.core.log import setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("info", args.verbose - args.quiet)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `voice-device devices | head`: the reader left; not an error worth a traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
