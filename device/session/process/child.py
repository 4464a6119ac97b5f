"""One session process as the daemon sees it (`Child`): its spawn, its channel, the calls waiting for replies, the
mic readers it opened, its hung check; what it sends is reported to its `Owner` (the daemon's `RemoteSupervisor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Protocol

from device.config.schema import Config
from device.core.vocabulary import Event
from device.session.clock import Clock, within
from device.session.ports import DaemonAudio, RingReader
from device.session.process.ipc import Channel, ChannelClosed
from device.session.process.protocol import (
    MIC_EOF,
    MIC_RECORD,
    Beat,
    Call,
    Close,
    Closed,
    CloseReader,
    Emitted,
    Flush,
    Hello,
    Log,
    Message,
    OpenReader,
    Over,
    Play,
    PlayEnd,
    Ready,
    Reply,
    Request,
    StartCall,
    StartFailed,
    StartTurnCall,
    Status,
    Volume,
)
from device.session.status import SessionStatus
from device.session.supervisor import SessionError, turns_status
from device.session.turns import Turns

log = logging.getLogger("device.session.process.child")

_ENV_DROP = ("NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])


def idle_status(config: Config) -> SessionStatus:
    """What `Supervisor.status()` says before any session (no child yet)."""
    return SessionStatus(turns=turns_status(Turns(config.session.turns, enabled=config.session.profile.turns)))


class ChildGone(SessionError):
    """The session process ended before it answered."""


class Owner(Protocol):
    """What a child reports to: the daemon's side of the sessions (`RemoteSupervisor`)."""

    @property
    def audio(self) -> DaemonAudio: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def interrupting(self) -> bool:
        """An interruption is on its way to the child: the agent's audio that arrives meanwhile is dropped."""
        ...

    def idle_status(self) -> SessionStatus: ...

    def serves(self, child: Child) -> bool:
        """Whether `child`'s events and audio are still the device's (it runs the current session)."""
        ...

    def emit(self, event: Event) -> None: ...

    def play(self, data: bytes, rate: int, channels: int, samples: int) -> None: ...

    def session_over(self, child: Child) -> None: ...

    def gone(self, child: Child, code: int | None) -> None:
        """`child`'s channel closed and the process exited with `code`."""
        ...


class Child:
    """One session process: its channel, the calls waiting for replies, the mic readers it opened."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.proc: asyncio.subprocess.Process | None = None
        self.chan: Channel | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.status = owner.idle_status()
        self.starts = 0  # start/start_turn calls sent (a current child that died idle had one pending)
        self.session = 0  # the device machine's number of the session it was asked to start
        self.alive = True  # until its channel closes
        self.heard = owner.clock.now()  # when it last sent anything
        self.hung = False
        self.muted = False  # what it was told (hello, set_muted)
        self.crashed = False  # it died while serving the device (its session was shown as failed)
        self._calls: dict[int, asyncio.Future[str | None]] = {}
        self._ids = itertools.count(1)
        self._readers: dict[int, tuple[RingReader, asyncio.Task[None]]] = {}
        self._pump: asyncio.Task[None] | None = None
        self._mic: socket.socket | None = None  # ring indices for the child's mic readers (MIC_RECORD each)

    @property
    def is_ready(self) -> bool:
        """It said it is ready (python and livekit imported, its supervisor built)."""
        return self.ready.done() and not self.ready.cancelled() and self.ready.exception() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def spawn(self, hello: Hello) -> None:
        ours, theirs = socket.socketpair()
        mic_ours, mic_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ring_fd = self.owner.audio.ring_fd
        env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "device.session.process.host", str(theirs.fileno()), str(mic_theirs.fileno()),
                str(ring_fd), pass_fds=(theirs.fileno(), mic_theirs.fileno(), ring_fd),
                stdin=asyncio.subprocess.DEVNULL, env=env,
            )
        except BaseException:
            mic_ours.close()
            raise
        finally:
            theirs.close()
            mic_theirs.close()
        mic_ours.setblocking(False)
        self._mic = mic_ours
        self.chan = await Channel.open(ours)
        self.muted = hello.muted
        self.chan.send(hello)
        self._pump = asyncio.get_running_loop().create_task(self._read())

    async def call(self, request: Request) -> None:
        if self.chan is None or not self.is_ready:
            raise SessionError("the session process is not ready")
        if not self.alive:
            raise ChildGone("the session process has ended")
        cid = next(self._ids)
        reply: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._calls[cid] = reply
        if isinstance(request, StartCall | StartTurnCall):
            self.starts += 1
            self.session = request.session
        self.chan.send(Call(cid, request))
        error = await reply
        if error is not None:
            raise ChildGone(error) if not self.alive else SessionError(error)

    async def close(self, grace: float) -> None:
        """Ask the child to end its session and exit; kill it after `grace` seconds."""
        if self.chan is None or not self.is_ready:
            self.kill()  # still starting: no session in it to end
        else:
            self.chan.send(Close())
        try:
            await within(self.owner.clock, self.wait(), grace)
        except TimeoutError:
            log.warning("session process did not exit in %.0f s; killing it pid=%s", grace, self.pid)
            self.kill()
            await self.wait()
        finally:
            self.kill()

    async def wait(self) -> int | None:
        if self.proc is None:
            return None
        return await self.proc.wait()

    def kill(self) -> None:
        # os.kill, not Process.kill: Popen.send_signal polls first, reaping an exited child before asyncio's
        # watcher can, which then reports exit code 255 instead of the real one
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)

    # ---- messages from the child -----------------------------------------------------------------------------

    async def _read(self) -> None:
        assert self.chan is not None
        try:
            while True:
                message = await self.chan.recv()
                self.heard = self.owner.clock.now()
                self._handle(message)
        except ChannelClosed:
            self.kill()  # exited, or its channel broke: either way it is done (a live one would hang `wait`)
        except Exception:
            log.exception("session process channel failed pid=%s", self.pid)
            self.kill()
        finally:
            for _, task in self._readers.values():
                task.cancel()
            for reader, _ in self._readers.values():
                reader.close()
            self._readers.clear()
            self.alive = False
            if self._mic is not None:
                self._mic.close()
                self._mic = None
            code = await self.wait()
            for reply in self._calls.values():
                if not reply.done():
                    reply.set_result(f"the session process ended (exit code {code}); see the log")
            self._calls.clear()
            if not self.ready.done():
                self.ready.set_exception(SessionError(
                    f"the session process could not start (exit code {code}); see the log"))
            self.chan.close()
            self.owner.gone(self, code)

    def _handle(self, message: Message) -> None:
        owner = self.owner
        match message:
            case Log(name, level, text, exc):
                record = logging.makeLogRecord({"name": name, "levelno": level,
                                                "levelname": logging.getLevelName(level), "msg": text,
                                                "exc_text": exc})
                logging.getLogger(name).handle(record)
            case Status(status):
                self.status = status
            case Reply(cid, error):
                reply = self._calls.pop(cid, None)
                if reply is not None and not reply.done():
                    reply.set_result(error)
            case Ready(pid):
                if not self.ready.done():
                    self.ready.set_result(None)
                log.info("session process ready pid=%s", pid)
            case StartFailed(detail):
                if not self.ready.done():
                    self.ready.set_exception(SessionError(f"the session process could not start: {detail}"))
            case OpenReader(rid, start):
                self._open_reader(rid, start)
            case CloseReader(rid):
                entry = self._readers.pop(rid, None)
                if entry is not None:
                    entry[0].close()
                    entry[1].cancel()
            case Closed() | Beat():
                pass
            case Emitted() | Play() | Flush() | Volume() | Over() if not owner.serves(self):
                pass  # a retired child's late events and audio are not the device's any more
            case Emitted(event):
                owner.emit(event)
            case Play(data, rate, channels, samples):
                if not owner.interrupting:
                    owner.play(data, rate, channels, samples)
            case PlayEnd():
                owner.audio.player.end()
            case Flush():
                owner.audio.player.flush()
            case Volume(volume):
                owner.audio.player.volume = volume
            case Over():
                owner.session_over(self)
            case _:
                log.warning("unexpected message from the session process message=%s", type(message).__name__)

    def check(self, now: float, limit: float) -> None:
        """Kill a ready child that has said nothing for `limit` seconds (a blocked loop, a native deadlock): its
        session fails and the next press gets a fresh child, instead of a device waiting on it for ever."""
        if self.alive and self.is_ready and not self.hung and now - self.heard > limit:
            self.hung = True
            log.error("session process stopped answering; killing it pid=%s silent_s=%.1f", self.pid,
                      now - self.heard)
            self.kill()

    def _open_reader(self, rid: int, start: int) -> None:
        reader = self.owner.audio.reader(start)
        task = asyncio.get_running_loop().create_task(self._stream(rid, reader))
        self._readers[rid] = (reader, task)

    async def _stream(self, rid: int, reader: RingReader) -> None:
        """The mic for reader `rid`: each time the ring has grown, the index it now ends at (`MIC_RECORD`) on the
        mic socket; the child reads the samples from the shared ring (audio/shared.py). `MIC_EOF` at the end."""
        try:
            while True:
                try:
                    end = await reader.advance()
                except StopAsyncIteration:
                    self._mic_send(rid, MIC_EOF)
                    return
                self._mic_send(rid, end)
        finally:
            reader.close()
            self._readers.pop(rid, None)

    def _mic_send(self, rid: int, end: int) -> None:
        if self._mic is None:
            return
        try:
            self._mic.send(MIC_RECORD.pack(rid, end))
        except BlockingIOError:  # a child this far behind (seconds) is hung; the next record names a later end
            log.debug("session process mic socket full pid=%s", self.pid)
        except OSError:
            pass  # the child is gone: its channel's end says so
