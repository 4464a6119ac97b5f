"""`python -m tests.stubsfu`: run the stub SFU with its scripted agent until SIGINT/SIGTERM (see __init__)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import warnings
from pathlib import Path

from . import __doc__ as package_doc
from . import versions
from .agent import AgentConfig
from .control import start_control
from .server import StubConfig, StubServer


def _delay(text: str) -> float | None:
    if text == "never":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("agent delay is seconds (e.g. 2.5) or 'never'") from None
    if value < 0:
        raise argparse.ArgumentTypeError("agent delay must not be negative")
    return value


def _reply(text: str) -> str:
    if text != "echo" and not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"agent reply must be 'echo' or an existing WAV file, not {text!r}")
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.stubsfu", description=(package_doc or "").split("\n\n")[0],
                                epilog="Details: the module docstring of tests/stubsfu/__init__.py.")
    p.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=7880, help="listen port, 0 picks one (default 7880)")
    p.add_argument("--api-key", default="devkey", help="API key tokens must be signed for (default devkey)")
    p.add_argument("--api-secret", default="secret", help="API secret (default secret, like livekit-server --dev)")
    p.add_argument("--agent-delay", type=_delay, default=2.0, metavar="SECONDS|never",
                   help="the agent joins this long after the first participant (default 2)")
    p.add_argument("--agent-reply", type=_reply, default="echo", metavar="echo|WAV",
                   help="what the agent answers: an echo of the turn it heard, or a WAV file (default echo)")
    p.add_argument("--agent-name", default="stub-agent",
                   help="the agent's lk.agent.name when the token dispatches none (default stub-agent); a token that "
                        "dispatches an agent names it, as the real server does")
    p.add_argument("--record", type=Path, default=None, metavar="DIR",
                   help="write session-N/{preconnect.raw,heard.wav,meta.json} and events.jsonl here")
    p.add_argument("--ptt", action=argparse.BooleanOptionalAction, default=False,
                   help="the agent offers start_turn/end_turn/cancel_turn RPCs (default off: VAD turns)")
    p.add_argument("--interruptible", action=argparse.BooleanOptionalAction, default=True,
                   help="speech while the agent speaks starts a new turn (default on; off: it speaks to the end)")
    p.add_argument("--control", type=Path, default=None, metavar="SOCKET",
                   help="serve the test control API on this UNIX socket")
    p.add_argument("--refresh-token-every", type=float, default=300.0, metavar="SECONDS",
                   help="push a refreshed token this often after the one right after join (default 300)")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return p


async def run(args: argparse.Namespace) -> int:
    config = StubConfig(
        host=args.host, port=args.port, api_key=args.api_key, api_secret=args.api_secret,
        agent=AgentConfig(delay_s=args.agent_delay, reply=args.agent_reply, record_dir=args.record,
                          ptt_rpcs=args.ptt, agent_name=args.agent_name, interruptible=args.interruptible),
        control_socket=args.control, refresh_token_s=args.refresh_token_every,
    )
    server = StubServer(config)
    await server.start()
    runner = await start_control(server, args.control) if args.control else None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.stop()))
    control = f" control={args.control}" if args.control else ""
    print(f"stubsfu ready url=ws://{args.host}:{config.port}{control}", flush=True)
    await server.stopped.wait()
    if runner is not None:
        await runner.cleanup()
    return 3 if server.fatal else 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # `secret` is the --dev secret: short on purpose, as in livekit-server --dev
    warnings.filterwarnings("ignore", message="The HMAC key is")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        versions.check_installed()
    except versions.VersionMismatch as e:
        print(f"stubsfu: {e}", file=sys.stderr)
        return 3
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
