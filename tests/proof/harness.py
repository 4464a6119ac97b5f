"""The real daemon as systemd runs it, for the proof tests: a subprocess, a notify socket, fault injectors.

    with DaemonProcess(config_path, rig) as d:         # `python -m device run --config … --simulate`
        d.notify.wait(lambda m: "READY" in m)           # every datagram, timestamped, kept in order
        d.wait_status("failed: unreachable")            # STATUS= is sent on every state change
        d.command("start")                              # one command over the control socket

Fault injectors: `HangingListener` (accepts TCP, never answers: a connect stays in flight), `TokenEndpoint` (a
local aiohttp token endpoint whose behaviour a test switches: 500, hang, garbage, huge body, redirect to http),
`mic_gone()` (unloads the rig's speaker and mic modules, restores them after). `write_config` turns a dict into
the YAML file the daemon reads. Everything waits with a timeout; no test here measures speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from device.daemon.client import ControlClient
from tests.polling import wait_for as wait_until  # noqa: F401 - re-exported for the proof tests

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# Variables that would change what the daemon does behind the config's back (livekit's standard credentials
# select the local token source) or tell it about a systemd that is not ours.
_SCRUB = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False))
    return path


def base_config(workdir: Path, **sections: Mapping[str, Any]) -> dict[str, Any]:
    """A push-to-talk config with a main button, a control socket and status file in `workdir`, and a token
    endpoint on a closed local port (nothing at start needs the network); `sections` replace whole sections.
    The built-in cues are on, as they ship; a test that follows the daemon's playback streams on the rig picks its
    own by process (`playback_streams`): a daemon of another test may be playing a cue at the same time."""
    config: dict[str, Any] = {
        "audio": {"block_ms": 20, "noise_suppression": False},
        "controls": {"button": {"pin": 17}},
        "livekit": {"token_source": "endpoint", "endpoint": f"http://127.0.0.1:{closed_port()}/token",
                    "http_timeout_s": 2.0},
        "session": {"mode": "push_to_talk", "connect_timeout_s": 4.0, "backoff": {"base_s": 0.05, "cap_s": 0.2,
                                                                                   "attempts": 2}},
        "daemon": {"control_socket": str(workdir / "control.sock"), "status_file": str(workdir / "status.json")},
        "logging": {"level": "info"},
    }
    config.update({k: dict(v) for k, v in sections.items()})
    return config


def closed_port() -> int:
    """A loopback port nobody listens on (bound then released: refused until someone takes it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def short_dir(prefix: str) -> Path:
    """A temp dir with a short path: sun_path holds 108 bytes and pytest's tmp_path can be longer."""
    return Path(tempfile.mkdtemp(prefix=prefix))


class NotifyRecorder:
    """systemd's end of $NOTIFY_SOCKET: a thread keeps every datagram as (monotonic time, {KEY: value})."""

    def __init__(self) -> None:
        self.dir = short_dir("vd-pn-")
        self.address = str(self.dir / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="notify-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            msg = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self._cond:
                self.messages.append((time.monotonic(), msg))
                self._cond.notify_all()

    def wait(self, predicate: Callable[[dict[str, str]], bool], timeout: float = 10.0, start: int = 0
             ) -> tuple[int, dict[str, str]]:
        """The first message from index `start` on that matches: (its index, the message)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(self.messages)):
                    if predicate(self.messages[i][1]):
                        return i, self.messages[i][1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [m for _, m in self.messages[start:] if "WATCHDOG" not in m]
                    raise AssertionError(f"no matching notify message within {timeout} s; saw {seen[-12:]}")
                self._cond.wait(remaining)

    def statuses(self) -> list[str]:
        with self._cond:
            return [m["STATUS"] for _, m in self.messages if "STATUS" in m]

    def pings(self) -> list[float]:
        with self._cond:
            return [t for t, m in self.messages if m.get("WATCHDOG") == "1"]

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            os.unlink(self.address)
            os.rmdir(self.dir)


class DaemonProcess:
    """`voice-device run --config PATH [--simulate]` in a subprocess, as systemd would start it.

    `launcher` replaces `python -m device` (a test wrapper taking the same arguments). `watchdog_usec` sets
    $WATCHDOG_USEC; `watchdog_pid` is "self" (the child's own pid, as systemd sets it),
    an explicit value, or None (unset). `prefix` wraps the command (e.g. `ip netns exec NAME`). stderr goes to
    `<workdir>/daemon.log`, stdout (the simulator's `state: …` lines) to `<workdir>/daemon.out`.
    """

    def __init__(self, config_path: Path, *, pulse_server: str | None, simulate: bool = True,
                 notify: bool = True, watchdog_usec: int | None = None, watchdog_pid: str | None = "self",
                 prefix: list[str] | None = None, extra_env: Mapping[str, str] | None = None,
                 verbose: bool = False, launcher: list[str] | None = None) -> None:
        self.config_path = config_path
        self.workdir = config_path.parent
        self.config = yaml.safe_load(config_path.read_text())
        self.control_socket = self.config["daemon"]["control_socket"]
        self.status_file = self.config["daemon"].get("status_file")
        self.notify = NotifyRecorder() if notify else None
        env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "LG_WD": str(self.workdir)})
        if pulse_server:
            env["PULSE_SERVER"] = pulse_server
        if self.notify is not None:
            env["NOTIFY_SOCKET"] = self.notify.address
        argv = [*(launcher or [PYTHON, "-m", "device"]), *(["-v"] if verbose else []), "run", "--config",
                str(config_path)]
        if simulate:
            argv.append("--simulate")
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
            if watchdog_pid == "self":
                argv = ["sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh", *argv]
            elif watchdog_pid is not None:
                env["WATCHDOG_PID"] = watchdog_pid
        env.update(extra_env or {})
        self.log_path = self.workdir / "daemon.log"
        self.out_path = self.workdir / "daemon.out"
        self._log = self.log_path.open("w")
        self._out = self.out_path.open("w")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen([*(prefix or []), *argv], cwd=ROOT, env=env, stdout=self._out,
                                     stderr=self._log, stdin=subprocess.DEVNULL)

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> dict[str, str]:
        assert self.notify is not None
        try:
            return self.notify.wait(lambda m: m.get("READY") == "1", timeout)[1]
        except AssertionError:
            raise AssertionError(f"no READY=1 within {timeout} s (rc={self.proc.poll()}); log:\n{self.log()}") \
                from None

    def wait_status(self, text: str, timeout: float = 15.0, start: int = 0) -> int:
        """Index of the first STATUS=`text` (exact, or a prefix ending in ':' such as 'failed:')."""
        assert self.notify is not None

        def match(m: dict[str, str]) -> bool:
            s = m.get("STATUS")
            return s is not None and (s == text or (text.endswith(":") and s.startswith(text)))

        try:
            return self.notify.wait(match, timeout, start)[0]
        except AssertionError as e:
            raise AssertionError(f"{e}\nlog tail:\n{self.log(25)}") from None

    def mark(self) -> int:
        """The index the next notify message will get (for `wait_status(..., start=d.mark())`)."""
        assert self.notify is not None
        return len(self.notify.messages)

    def client(self, timeout_s: float = 10.0) -> ControlClient:
        client = ControlClient(self.control_socket, timeout_s=timeout_s)
        client.connect()
        return client

    def command(self, cmd: str, **fields: Any) -> dict[str, Any]:
        with self.client() as c:
            c.snapshot()
            return c.command({"cmd": cmd, **fields})

    def log_lines(self) -> int:
        """How many log lines there are now (for `log_since`)."""
        return len(self.log().splitlines())

    def log_since(self, line: int) -> str:
        return "\n".join(self.log().splitlines()[line:])

    def send_raw(self, payload: bytes, replies: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Send bytes as they are on a fresh connection; return the first `replies` ok/error answers."""
        out: list[dict[str, Any]] = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.control_socket)
            sock.sendall(payload)
            buffer = b""
            while len(out) < replies:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    msg = json.loads(line)
                    if msg.get("type") in ("ok", "error"):
                        out.append(msg)
        return out

    def snapshot(self) -> dict[str, Any]:
        with self.client() as c:
            return c.snapshot()

    def status_file_json(self) -> dict[str, Any]:
        assert self.status_file
        return json.loads(Path(self.status_file).read_text())

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 8.0) -> int:
        """The exit code; a bound on the wait, not a measurement (the stop budget is 5 s)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the daemon did not exit within {timeout} s; log tail:\n{self.log(25)}") from None

    def log(self, tail: int | None = None) -> str:
        self._log.flush()
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:] if tail else lines)

    def out(self) -> str:
        self._out.flush()
        return self.out_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self._log.close()
        self._out.close()
        if self.notify is not None:
            self.notify.close()


class HangingListener:
    """A TCP port that accepts connections and never answers: a websocket connect (or HTTP request) to it
    stays in flight until the client gives up. Counts the connections it accepted."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="hanging-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def wait_connection(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.accepted:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing connected to port {self.port} within {timeout} s")
            time.sleep(0.05)

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        self._thread.join(timeout=2)
        for conn in self.accepted:
            conn.close()


class TokenEndpoint:
    """A token endpoint on 127.0.0.1 (aiohttp, in a thread with its own loop); `behaviour` picks the answer:

    ok (server_url = `server_url`), 500, hang (never answers), garbage (not JSON), huge (a 20 MB body),
    redirect-http (a 307 to plain http on another host), 401, echo-500 (a 500 whose body repeats the
    request's headers, as a careless server might). Every request is kept as (path, headers, body).
    """

    def __init__(self, server_url: str = "ws://127.0.0.1:9") -> None:
        self.behaviour = "ok"
        self.server_url = server_url
        self.token = "header.payload.signature"
        self.requests: list[tuple[str, dict[str, str], str]] = []
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._runner: Any = None
        self._closing: asyncio.Event
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="token-endpoint", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the test token endpoint did not start")
        self.url = f"http://127.0.0.1:{self.port}/token"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._started.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        from aiohttp import web

        self._closing = asyncio.Event()

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.text()
            self.requests.append((request.path, dict(request.headers), body))
            match self.behaviour:
                case "ok":
                    return web.json_response({"server_url": self.server_url, "participant_token": self.token},
                                             status=201)
                case "500":
                    return web.Response(status=500, text="internal error: database unavailable")
                case "echo-500":
                    return web.Response(status=500, text=f"bad request with headers {dict(request.headers)}")
                case "401":
                    return web.Response(status=401, text="unknown device")
                case "hang":
                    await self._closing.wait()  # until the test ends
                    return web.Response(status=504)
                case "garbage":
                    return web.Response(status=200, body=b"\x00\xffnot json at all<html>", content_type="text/html")
                case "huge":
                    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
                    await response.prepare(request)
                    chunk = b"[" + b"1," * 512 * 1024  # 1 MB of a JSON array that never ends
                    for _ in range(20):
                        await response.write(chunk)
                    await response.write_eof()
                    return response
                case "redirect-http":
                    raise web.HTTPTemporaryRedirect("http://tokens.example.invalid/token")
            return web.Response(status=500, text=f"unknown behaviour {self.behaviour}")

        app = web.Application()
        app.router.add_post("/token", handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def close(self) -> None:
        async def stop() -> None:
            self._closing.set()
            await self._runner.cleanup()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


# ---- the audio rig's devices ---------------------------------------------------------------------------------


def _modules(rig: Any) -> dict[str, str]:
    return {line.split()[1]: line.split()[0] for line in rig.pactl("list", "short", "modules").splitlines()}


def unload_rig(rig: Any) -> None:
    """The mic and the speaker vanish (the virtual source first: it hangs off the sink's monitor)."""
    modules = _modules(rig)
    for name in ("module-virtual-source", "module-null-sink"):
        if name in modules:
            rig.pactl("unload-module", modules[name])


def restore_rig(rig: Any) -> None:
    """Reload what scripts/virtual-audio.sh loads, with the same arguments (idempotent)."""
    modules = _modules(rig)
    if "module-null-sink" not in modules:
        rig.pactl("load-module", "module-null-sink", "sink_name=spk", "rate=48000", "channels=1", "norewinds=1",
                  "sink_properties=device.description=virtual-speaker")
    if "module-virtual-source" not in modules:
        rig.pactl("load-module", "module-virtual-source", "source_name=mic", "master=spk.monitor",
                  "source_properties=device.description=virtual-mic")
    rig.pactl("set-default-sink", "spk")
    rig.pactl("set-default-source", "mic")


def playback_streams(rig: Any, pid: int) -> list[str]:
    """The rig's sink inputs (playback streams) that process `pid` opened, by PulseAudio's record of the client's
    process — not every client's stream: another daemon on the rig (a module-scoped one, say) may be playing a
    cue of its own at the same moment."""
    streams, current = [], None
    for line in rig.pactl("list", "sink-inputs").splitlines():
        line = line.strip()
        if line.startswith("Sink Input #"):
            current = line.removeprefix("Sink Input #")
        elif line == f'application.process.id = "{pid}"' and current is not None:
            streams.append(current)
    return streams


@contextlib.contextmanager
def mic_gone(rig: Any) -> Iterator[None]:
    unload_rig(rig)
    try:
        yield
    finally:
        restore_rig(rig)


