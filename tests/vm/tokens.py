"""The VM's token endpoint: HTTPS on the host side of the VM's tap, as a real appliance's endpoint would be.

`python -m tests.vm.tokens --cert C --key K --livekit-url URL --api-key K --api-secret S --log FILE` (run inside
the VM's namespace) listens on 10.232.0.1, port chosen by the kernel, and prints `tokens ready port=N`. The path
picks the answer:
- `POST /ok`: LiveKit's standard answer (201, `server_url` + `participant_token` for a room of its own, minted for
  the stub SFU with the key and secret given here, dispatching the agent the request's `room_config` names);
- `POST /echo-500`: a 500 whose body repeats the request's headers, credential included (a careless server).
Every request is appended to `--log` as a JSON line (path and headers), so a test can prove the credential was
sent. The certificate is the test's own (a self-signed one for 10.232.0.1, which the guest's unit trusts through
SSL_CERT_FILE): the device's rule that a token endpoint is HTTPS holds here too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import ssl
from pathlib import Path

from aiohttp import web

from tests.vm.machine import HOST_IP
from tests.wire.harness import mint_token


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for HOST_IP: (cert, key) in `directory`."""
    import subprocess

    cert, key = directory / "tokens-cert.pem", directory / "tokens-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=voice-device VM test token endpoint", "-addext", f"subjectAltName=IP:{HOST_IP}",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def dispatched(body: bytes) -> str | None:
    """The agent a standard token request's `room_config` dispatches, if any."""
    try:
        agents = json.loads(body or b"{}").get("room_config", {}).get("agents") or []
        return str(agents[0]["agent_name"]) if agents else None
    except (ValueError, AttributeError, KeyError, IndexError, TypeError):
        return None


def app(args: argparse.Namespace) -> web.Application:
    log = Path(args.log)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        with log.open("a") as f:
            f.write(json.dumps({"path": request.path, "headers": dict(request.headers)}) + "\n")
        if request.path == "/ok":
            room = f"vm-{secrets.token_hex(4)}"
            token = mint_token(identity="vd-appliance", room=room, key=args.api_key, secret=args.api_secret,
                               agent_name=dispatched(body))
            return web.json_response({"server_url": args.livekit_url, "participant_token": token}, status=201)
        if request.path == "/echo-500":
            return web.Response(status=500, text=f"bad request with headers {dict(request.headers)}")
        return web.Response(status=404, text="no such behaviour")

    application = web.Application()
    application.router.add_post("/{behaviour}", handle)
    return application


async def serve(args: argparse.Namespace) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    runner = web.AppRunner(app(args))
    await runner.setup()
    site = web.TCPSite(runner, HOST_IP, 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"tokens ready port={port}", flush=True)
    await asyncio.Event().wait()  # until the test stops the process


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.vm.tokens")
    for name in ("--cert", "--key", "--livekit-url", "--api-key", "--api-secret", "--log"):
        p.add_argument(name, required=True)
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
