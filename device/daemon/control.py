"""The local control socket: a unix stream socket speaking newline-delimited JSON, one object per line.

On connect the server sends `{"type":"snapshot", ...}` — the daemon's `DeviceStatus` (`daemon/status.py`:
state, reason, session, agent, transcripts, mute, volume, the client flags) with its flat `metrics` — then one
`{"type":"state","state":...,"reason":...,"t":<unix time>}` per change. A client sends commands, one object a
line, from the table in `daemon/commands.py`: `{"cmd":"start"}`, `end`, `mute`, `unmute`,
`{"cmd":"say","text":...}`, and (simulate mode only) `press` / `release`; each is answered `{"type":"ok"}` or
`{"type":"error","message":...}`.

The socket is local but its peers are not trusted to be well-behaved: garbage, invalid UTF-8, non-object JSON
and unknown commands get an error reply; a line over `MAX_LINE` bytes gets one and the connection is closed.
Every client has a bounded outgoing queue drained by its own writer task, so a client that stops reading is
dropped when its queue fills instead of growing memory or blocking the loop. The server validates commands
and hands the clean ones to a `CommandHandler`; what they do is the app's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

from device.core.dynamic import JSON
from device.daemon.commands import Command, CommandInvalid, parse
from device.daemon.status import DeviceStatus, status_json

log = logging.getLogger("device.daemon.control")

MAX_LINE = 64 * 1024
QUEUE_SIZE = 256
MAX_CLIENTS = 32
COMMAND_TIMEOUT_S = 10.0


class ControlError(Exception):
    """A command the daemon cannot carry out now; its message is the one sentence the client shows."""


class ControlSocketInUse(RuntimeError):
    """Another process already answers on the control socket (a second daemon)."""


class CommandHandler(Protocol):
    async def handle(self, cmd: Command) -> None:
        """Carry out a validated command; raise ControlError to refuse it."""


def encode(message: Mapping[str, JSON]) -> bytes:
    # default=str: a value of an unexpected type (a Path, an enum) must not break the status of the daemon.
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str).encode() + b"\n"


class _Client:
    """One connection: its bounded outgoing queue and the tasks serving it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, queue_size: int):
        self.reader = reader
        self.writer = writer
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(queue_size)
        self.closed = False
        self.writer_task: asyncio.Task[None] | None = None

    def send(self, message: Mapping[str, JSON]) -> bool:
        """Queue a message; False (and the client closed) when its queue is full: it stopped reading."""
        if self.closed:
            return False
        try:
            self.queue.put_nowait(encode(message))
        except asyncio.QueueFull:
            self.close()
            return False
        return True

    def finish(self) -> None:
        """Close after what is queued has been written (end of input)."""
        if not self.closed:
            try:
                self.queue.put_nowait(None)
            except asyncio.QueueFull:
                self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.transport.abort()  # no flush: a stuck peer must not keep this connection alive


class ControlServer:
    """Serves the control protocol on a unix socket; `publish_state` fans state changes out to every client."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        handler: CommandHandler,
        snapshot: Callable[[], DeviceStatus],
        *,
        mode: int = 0o660,
        simulate: bool = False,
        queue_size: int = QUEUE_SIZE,
        max_clients: int = MAX_CLIENTS,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        refresh: Callable[[], Awaitable[None]] | None = None,
    ):
        self.path = Path(path)
        self.refresh = refresh  # brings the metrics up to date before a snapshot (a session process's status)
        self.handler = handler
        self.snapshot = snapshot
        self.mode = mode
        self.simulate = simulate
        self.queue_size = queue_size
        self.max_clients = max_clients
        self.command_timeout_s = command_timeout_s
        self.clock = clock
        self.dropped_clients = 0
        self._clients: set[_Client] = set()
        self._server: asyncio.AbstractServer | None = None
        self._inode: tuple[int, int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def client_count(self) -> int:
        return len(self._clients)

    async def start(self) -> None:
        """Bind the socket (replacing a stale one), set its mode, and start accepting."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(str(self.path))
            # Before listen(): nobody can connect while the socket still has the umask's permissions.
            os.chmod(self.path, self.mode)
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
        except BaseException:
            sock.close()
            raise
        log.info("control socket listening path=%s mode=%o simulate=%s", self.path, self.mode, self.simulate)

    def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlSocketInUse(f"{self.path} exists and is not a socket; remove it or set daemon.control_socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("control socket stale path=%s: replacing it", self.path)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        except OSError:
            pass  # e.g. a timeout: something is there but not answering; treat it as alive
        finally:
            probe.close()
        raise ControlSocketInUse(
            f"another voice-device is already running on {self.path}; stop it first (systemctl stop voice-device)"
        )

    def publish_state(self, state: str, reason: str | None = None) -> None:
        """Tell every client about a state change; never blocks. Clients that stopped reading are dropped."""
        message = {"type": "state", "state": str(state), "reason": reason, "t": self.clock()}
        for client in list(self._clients):
            if client.closed:  # it went away (e.g. `voice-device ctl` after its reply): not worth a warning
                self._clients.discard(client)
            elif not client.send(message):
                self._drop(client, "queue full")

    def _drop(self, client: _Client, why: str) -> None:
        if client in self._clients:
            self._clients.discard(client)
            self.dropped_clients += 1
            log.warning("control client dropped reason=%s", why)
        client.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for client in list(self._clients):
            client.close()
        self._clients.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)
        self._unlink_own_socket()

    def _unlink_own_socket(self) -> None:
        # Only our own socket: a second daemon that replaced it after we were declared stale keeps its own.
        try:
            st = os.lstat(self.path)
            if self._inode == (st.st_dev, st.st_ino):
                self.path.unlink()
        except FileNotFoundError:
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        client = _Client(reader, writer, self.queue_size)
        try:
            if len(self._clients) >= self.max_clients:
                log.warning("control client refused reason=too-many-clients max=%d", self.max_clients)
                writer.write(encode({"type": "error", "message": "too many control clients; try again later"}))
                writer.close()
                return
            if self.refresh is not None:
                try:
                    await self.refresh()
                except Exception as e:
                    log.warning("status refresh failed error=%s", e)
            # Snapshot and registration with no await between: no state change is lost or duplicated.
            client.send({"type": "snapshot", **status_json(self.snapshot())})
            self._clients.add(client)
            client.writer_task = asyncio.create_task(self._write_loop(client))
            await self._read_loop(client)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only close() cancels this task, and it waits for it. Ending normally instead of re-raising: on
            # Python 3.11 start_unix_server's done-callback calls task.exception() on a cancelled handler, which
            # logs a CancelledError traceback for every client still connected at shutdown (fixed in 3.12).
            client.close()
        except Exception:
            log.exception("control client failed")
        finally:
            if client.writer_task is not None and not client.closed:
                client.finish()
                # The writer flushes the replies still queued; bounded so a peer that stopped reading cannot stall us.
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(client.writer_task), timeout=5.0)
            self._clients.discard(client)
            client.close()
            if client.writer_task is not None:
                client.writer_task.cancel()
            if task is not None:
                self._tasks.discard(task)

    async def _write_loop(self, client: _Client) -> None:
        try:
            while True:
                data = await client.queue.get()
                if data is None:
                    break
                client.writer.write(data)
                await client.writer.drain()
            client.writer.close()
        except (ConnectionError, OSError):
            pass
        finally:
            client.closed = True

    async def _read_loop(self, client: _Client) -> None:
        while not client.closed:
            try:
                raw = await client.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:
                raw = e.partial  # EOF: the last line may lack its newline
                if raw.strip():
                    await self._answer(client, raw)
                return
            except asyncio.LimitOverrunError:
                client.send({"type": "error", "message": f"line longer than {MAX_LINE} bytes; closing"})
                return
            if raw.strip():
                await self._answer(client, raw)

    async def _answer(self, client: _Client, raw: bytes) -> None:
        try:
            try:
                msg = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise ControlError("a line must be UTF-8 JSON") from None
            except json.JSONDecodeError as e:
                raise ControlError(f"invalid JSON: {e.msg} at column {e.colno}") from None
            except (ValueError, RecursionError):  # e.g. an integer of 5,000 digits, or 60,000 nested brackets
                raise ControlError("invalid JSON: a value is too large or nested too deeply") from None
            cmd = parse(msg, self.simulate)
            log.info("control command cmd=%s", cmd.name)
            await asyncio.wait_for(self.handler.handle(cmd), timeout=self.command_timeout_s)
        except (ControlError, CommandInvalid) as e:
            client.send({"type": "error", "message": str(e)})
        except TimeoutError:
            log.warning("control command timed out timeout_s=%.1f", self.command_timeout_s)
            client.send({"type": "error", "message": "the daemon did not finish the command in time; see its log"})
        except Exception:
            log.exception("control command failed")
            client.send({"type": "error", "message": "internal error carrying out the command; see the daemon log"})
        else:
            client.send({"type": "ok"})
