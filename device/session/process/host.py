"""The session process: one `Supervisor` and its LiveKit Room, in a child of the daemon, for one session.

    python -m device.session.process.host FD MIC_FD RING_FD   (started by `process/child.py`, never by hand)

The livekit 1.2.1 native core keeps about half a megabyte of every session it ran until the process exits, and
aborts the process on some native errors. So the daemon keeps the microphone, the speaker, the button and the
LEDs, and runs each session here: when the session ends this process exits and takes that memory with it, and
a native crash ends one session, not the device.

The messages are `protocol.py`'s: the daemon sends a `Hello` (configuration, identity, mute, volume, log levels),
then `Call`s; this side answers each with a `Reply`, and sends the supervisor's events, its status whenever it
changes, its log records (the daemon's handlers format and redact them), the agent's audio to play, and `Over`
once the session has ended. The supervisor's audio is `child_audio.RemoteAudio`: the mic read from the daemon's
ring in shared memory, the speaker through the channel.
Signals are the daemon's: this process ignores SIGTERM/SIGINT/SIGHUP and ends when told to or when the daemon's
end of the socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from device.audio.shared import RingView
from device.core.vocabulary import Event
from device.session.ports import SessionPort
from device.session.process.child_audio import RemoteAudio
from device.session.process.ipc import Channel, ChannelClosed
from device.session.process.protocol import (
    Beat,
    Call,
    Close,
    Closed,
    Emitted,
    Hello,
    Log,
    Over,
    Ready,
    Reply,
    Request,
    StartFailed,
    Status,
    perform,
    starts_a_session,
)
from device.session.status import SessionStatus

if TYPE_CHECKING:

    from device.config.schema import Config
    from device.session.ports import AudioPort

log = logging.getLogger("device.session.process.host")

STATUS_EVERY_S = 0.1
BEAT_EVERY_S = 1.0  # with nothing else to say, "still here": the daemon kills a child silent for longer
CLOSE_ON_EOF_S = 5.0
WARM_FOR_TOKENS = {"endpoint": ("aiohttp",), "sandbox": ("aiohttp",), "local": ("livekit.api",)}


class LogForwarder(logging.Handler):
    """Every record that passes this process's levels goes to the daemon, whose handlers redact and write it."""

    def __init__(self, chan: Channel, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._chan = chan
        self._loop = loop
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            exc = logging.Formatter().formatException(record.exc_info) if record.exc_info else record.exc_text
            message = Log(record.name, record.levelno, record.getMessage(), exc)
        except Exception:
            self.handleError(record)
            return
        if threading.get_ident() == self._thread:
            self._chan.send(message)
        else:  # the SDK logs from its own threads
            self._loop.call_soon_threadsafe(self._chan.send, message)


def _setup_logging(chan: Channel, levels: tuple[tuple[str, int], ...]) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(LogForwarder(chan, asyncio.get_running_loop()))
    for name, level in levels:
        logging.getLogger(name or None).setLevel(level)


class Factory(Protocol):
    """What builds the child's supervisor: the real one, or (tests) one on fakes named `module:function`."""

    def __call__(self, config: Config, audio: AudioPort, emit: Callable[[Event], None], *, identity: str,
                 muted: bool, on_session_over: Callable[[], None]) -> SessionPort: ...


def default_factory(config: Config, audio: AudioPort, emit: Callable[[Event], None], *, identity: str,
                    muted: bool, on_session_over: Callable[[], None]) -> SessionPort:
    from device.session.supervisor import Supervisor

    return Supervisor(config, audio, emit, identity=identity, muted=muted, on_session_over=on_session_over)


def _load(spec: str | None) -> Factory:
    """`module:function` (tests build their supervisor from fakes), or the real one."""
    if not spec:
        return default_factory
    module, _, name = spec.partition(":")
    factory: Factory = getattr(importlib.import_module(module), name)
    return factory


def status_every(started: bool) -> float:
    """How often the child looks at its status: every 0.1 s once a session has started (its counters move between
    events); the spare child, which has nothing to report, only beats, once a second."""
    return STATUS_EVERY_S if started else BEAT_EVERY_S


class Host:
    def __init__(self, chan: Channel, hello: Hello, view: RingView, mic: socket.socket) -> None:
        self.chan = chan
        self.audio = RemoteAudio(chan, hello.sample_rate, hello.volume, view, mic)
        self._last_status: SessionStatus | None = None
        self.started = False  # a start call came (see status_every)
        self._tasks: set[asyncio.Task[None]] = set()
        factory = _load(hello.factory)
        self.sup = factory(hello.config, self.audio, self._emit, identity=hello.identity, muted=hello.muted,
                           on_session_over=self._over)

    def _emit(self, event: Event) -> None:
        self.chan.send(Emitted(event))
        self.push_status()

    def _over(self) -> None:
        self.push_status()
        self.chan.send(Over())

    def push_status(self) -> None:
        status = self.sup.status()
        if status != self._last_status:
            self._last_status = status
            self.chan.send(Status(status))

    async def _status_ticker(self) -> None:
        loop = asyncio.get_running_loop()
        beat = loop.time()
        while True:
            await asyncio.sleep(status_every(self.started))
            self.push_status()
            if loop.time() - beat >= BEAT_EVERY_S:
                beat = loop.time()
                self.chan.send(Beat())

    async def _call(self, cid: int, request: Request) -> None:
        if starts_a_session(request):
            self.started = True
        error = None
        try:
            await perform(self.sup, request)
        except Exception as e:
            error = f"{e}" or type(e).__name__
        self.push_status()  # before the reply: the status after a call is there when the call returns
        self.chan.send(Reply(cid, error))

    async def serve(self) -> None:
        ticker = asyncio.get_running_loop().create_task(self._status_ticker())
        try:
            while True:
                try:
                    message = await self.chan.recv()
                except ChannelClosed:  # the daemon is gone: end the session cleanly, quickly
                    await asyncio.wait_for(self.sup.aclose(), CLOSE_ON_EOF_S)
                    return
                match message:
                    case Call(cid, request):
                        task = asyncio.get_running_loop().create_task(self._call(cid, request))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    case Close():
                        await self.sup.aclose()
                        self.push_status()
                        self.chan.send(Closed())
                        await self.chan.drain()
                        return
                    case _:
                        log.warning("unexpected message from the daemon message=%s", type(message).__name__)
        finally:
            ticker.cancel()


def _warm_up(token_source: str) -> None:
    """Import now what a session imports on first use — livekit's FFI, and the HTTP client or the token minting
    its token source needs (~0.3 s here, more on a Pi) — so the press does not wait for it."""
    for module in ("livekit.rtc", *WARM_FOR_TOKENS.get(token_source, ())):
        importlib.import_module(module)


async def _main(fd: int, mic_fd: int, ring_fd: int) -> int:
    chan = await Channel.open(socket.socket(fileno=fd))
    mic = socket.socket(fileno=mic_fd)
    view = RingView(ring_fd)
    try:
        hello = await chan.recv()
    except ChannelClosed:
        return 1
    if not isinstance(hello, Hello):
        return 1
    _setup_logging(chan, hello.log_levels)
    try:
        _warm_up(hello.config.livekit.token_source)
        host = Host(chan, hello, view, mic)
    except Exception as e:
        log.exception("session process could not start")
        chan.send(StartFailed(f"{type(e).__name__}: {e}"))
        await chan.drain()
        return 1
    chan.send(Ready(os.getpid()))
    with contextlib.suppress(ChannelClosed, TimeoutError):
        await host.serve()
    with contextlib.suppress(ChannelClosed):
        await chan.drain()
    return 0


async def _run(fd: int, mic_fd: int, ring_fd: int) -> None:
    """Serve, then exit at once: asyncio.run's clean-up would wait for the SDK's executor threads."""
    code = await _main(fd, mic_fd, ring_fd)
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or not all(a.isdigit() for a in args):
        print("usage: python -m device.session.process.host FD MIC_FD RING_FD  (started by the voice-device daemon)",
              file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the daemon decides when a session ends
    asyncio.run(_run(*(int(a) for a in args)))
    return 1  # not reached: _run exits the process


if __name__ == "__main__":
    raise SystemExit(main())
