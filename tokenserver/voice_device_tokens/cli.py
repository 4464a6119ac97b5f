"""The `voice-device-tokens` command line: parsing and dispatch only.

    voice-device-tokens enrol  --store PATH --device ID --group GROUP [--endpoint URL]
    voice-device-tokens revoke --store PATH --device ID
    voice-device-tokens list   --store PATH
    voice-device-tokens serve  --config FILE

`enrol` prints on stdout only the lines of the device's env file (`VOICE_DEVICE_TOKEN_ENDPOINT=`,
`VOICE_DEVICE_CREDENTIAL=`), ready for `scripts/install.sh --env-file -`; everything else goes to stderr.
Exit codes: 0 success, 1 a runtime failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

from voice_device_tokens import __version__
from voice_device_tokens.config import ConfigError, load
from voice_device_tokens.credential import NAME_RULE, valid_name
from voice_device_tokens.store import Store, StoreError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _say(message: str) -> None:
    print(f"voice-device-tokens: {message}", file=sys.stderr)


def _device_id(value: str) -> str:
    if not valid_name(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid device id: use {NAME_RULE}")
    return value


def _group(value: str) -> str:
    if not valid_name(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid group: use {NAME_RULE}")
    return value


def _endpoint(value: str) -> str:
    if not value.startswith(("https://", "http://")) or any(c.isspace() for c in value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an http(s):// URL")
    return value


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def enrol(args: argparse.Namespace) -> int:
    with closing(Store(args.store)) as store:
        credential, device = store.enrol(args.device, args.group)
    if device.generation > 1:
        _say(f"{device.device_id}: new credential (number {device.generation}); the previous one no longer works")
    else:
        _say(f"{device.device_id}: enrolled in group {device.group}")
    if args.endpoint:
        print(f"VOICE_DEVICE_TOKEN_ENDPOINT={args.endpoint}")
    print(f"VOICE_DEVICE_CREDENTIAL={credential.text()}")
    return EXIT_OK


def revoke(args: argparse.Namespace) -> int:
    with closing(Store(args.store)) as store:
        device = store.revoke(args.device)
    if device is None:
        _say(f"no device {args.device} is enrolled in {args.store}")
        return EXIT_FAILURE
    _say(f"{device.device_id}: revoked (its next token request is refused; `enrol` gives it a new credential)")
    return EXIT_OK


def list_devices(args: argparse.Namespace) -> int:
    with closing(Store(args.store)) as store:
        devices = store.devices()
    print("device\tgroup\tstate\tenrolled\tcredential")
    for d in devices:
        state = f"revoked {_when(d.revoked_at)}" if d.revoked_at is not None else "active"
        print(f"{d.device_id}\t{d.group}\t{state}\t{_when(d.enrolled_at)}\t#{d.generation}")
    return EXIT_OK


def serve(args: argparse.Namespace) -> int:
    from voice_device_tokens.serve import serve as run

    config = load(args.config)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(run(config))
    except OSError as e:
        _say(f"cannot listen on {config.host}:{config.port} ({e.strerror or e}); choose another listen.port")
        return EXIT_FAILURE
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voice-device-tokens", description="The token endpoint of a voice-device fleet")
    p.add_argument("--version", action="version", version=f"voice-device-tokens {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    store_help = "the device store (SQLite; created if missing)"
    e = sub.add_parser("enrol", help="create or rotate a device's credential; prints its env file lines")
    e.add_argument("--store", type=Path, required=True, help=store_help)
    e.add_argument("--device", type=_device_id, required=True, help="the device id (its LiveKit identity)")
    e.add_argument("--group", type=_group, required=True, help="its group (the agent it gets, from serve's config)")
    e.add_argument("--endpoint", type=_endpoint, help="the token endpoint URL to print for the device")
    e.set_defaults(run=enrol)
    r = sub.add_parser("revoke", help="refuse a device's credential from its next request on")
    r.add_argument("--store", type=Path, required=True, help=store_help)
    r.add_argument("--device", type=_device_id, required=True)
    r.set_defaults(run=revoke)
    ls = sub.add_parser("list", help="the enrolled devices (no secrets)")
    ls.add_argument("--store", type=Path, required=True, help=store_help)
    ls.set_defaults(run=list_devices)
    s = sub.add_parser("serve", help="run the token endpoint")
    s.add_argument("--config", type=Path, required=True, help="its YAML configuration")
    s.set_defaults(run=serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as e:
        _say(f"{args.config}: {e}")
        return EXIT_USAGE
    except (StoreError, ValueError) as e:
        _say(str(e))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return code
