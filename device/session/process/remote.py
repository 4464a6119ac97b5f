"""`RemoteSupervisor`: the daemon's side of a session that runs in its own process (`device.session.process.host`).

It has the `Supervisor`'s public API, so the daemon does not know the difference. Each session runs in one
child process; when the child reports the session over, the daemon retires it (it disconnects, exits, and the
native memory the SDK kept goes with it). In `warm` mode a spare child is started when a session ends (and at
start-up), never during a session, where its import would compete with the audio for CPU: idle, the device
runs the daemon and one ready child (python and livekit imported) that the next press hands the session to; a
press within a second or so of the last session's end waits for it (its speech is buffered meanwhile).
`on_demand` starts the child at the press instead: less memory while idle, a slower first answer. The child
streams the mic from the daemon's ring by index, sends the agent's audio to the daemon's player, forwards its
log records and its status.

What survives a child: the device identity, mute, the speaker volume (sent with every hello), the metrics
(summed over children), the last failure and the last transcripts (kept from the child that had them).
A child that dies in a session ends it as `failed(internal)` with its exit code in the log; a child that cannot
start at all is retried with backoff, and a press meanwhile gets a sentence saying so.
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
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from device.config.schema import Config
from device.core.backoff import Backoff
from device.core.vocabulary import Event, FailureReason, SessionFailed
from device.session.ports import AudioPort, AudioReader
from device.session.process.ipc import Channel, ChannelClosed
from device.session.process.protocol import (
    MIC_EOF,
    MIC_RECORD,
    Beat,
    Call,
    CancelTurnCall,
    Close,
    Closed,
    CloseReader,
    Emitted,
    EndCall,
    EndTurnCall,
    Flush,
    Hello,
    InterruptCall,
    Log,
    Message,
    OpenReader,
    Over,
    Play,
    PlayEnd,
    Ready,
    RefreshCall,
    Reply,
    Request,
    SendTextCall,
    SetMutedCall,
    StartCall,
    StartFailed,
    StartTurnCall,
    Status,
    Volume,
    WaitQuietCall,
)
from device.session.status import ProcessStatus, SessionStatus
from device.session.supervisor import SessionError, turns_status
from device.session.tokens import build_request
from device.session.turns import Turns

log = logging.getLogger("device.session.process.remote")

REFRESH_TIMEOUT_S = 1.0  # a control client's snapshot waits at most this for a busy session process
READY_TIMEOUT_S = 60.0  # python + numpy + livekit import on a slow SD card
PRESS_WAIT_S = 15.0  # a press waits this long for a session process still starting, then fails (internal)
CLOSE_GRACE_S = 5.0  # a retired child's own disconnect; it is killed after this (plus its connect deadline)
RESPAWN_BASE_S, RESPAWN_CAP_S = 0.5, 30.0  # a session process that keeps dying is started again ever more slowly
_ENV_DROP = ("NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])


def idle_status(config: Config) -> SessionStatus:
    """What `Supervisor.status()` says before any session (no child yet)."""
    return SessionStatus(turns=turns_status(Turns(config.session.turns, enabled=config.session.profile.turns)))


class ChildGone(SessionError):
    """The session process ended before it answered."""


class Child:
    """One session process: its channel, the calls waiting for replies, the mic readers it opened."""

    def __init__(self, owner: RemoteSupervisor) -> None:
        self.owner = owner
        self.proc: asyncio.subprocess.Process | None = None
        self.chan: Channel | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.status = idle_status(owner._cfg)
        self.starts = 0  # start/start_turn calls sent (a current child that died idle had one pending)
        self.session = 0  # the device machine's number of the session it was asked to start
        self.alive = True  # until its channel closes
        self.heard = asyncio.get_running_loop().time()  # when it last sent anything
        self.hung = False
        self.muted = False  # what it was told (hello, set_muted)
        self.crashed = False  # it died while serving the device (its session was shown as failed)
        self._calls: dict[int, asyncio.Future[str | None]] = {}
        self._ids = itertools.count(1)
        self._readers: dict[int, tuple[AudioReader, asyncio.Task[None]]] = {}
        self._pump: asyncio.Task[None] | None = None
        self._mic: socket.socket | None = None  # ring indices for the child's mic readers (MIC_RECORD each)

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
        if self.chan is None or not _ready(self):
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
        if self.chan is None or not _ready(self):
            self.kill()  # still starting: no session in it to end
        else:
            self.chan.send(Close())
        try:
            await asyncio.wait_for(self.wait(), grace)
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
            loop = asyncio.get_running_loop()
            while True:
                message = await self.chan.recv()
                self.heard = loop.time()
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
            self.owner._gone(self, code)

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
            case Emitted() | Play() | Flush() | Volume() | Over() if self is not owner.current or owner.closed:
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
        if self.alive and _ready(self) and not self.hung and now - self.heard > limit:
            self.hung = True
            log.error("session process stopped answering; killing it pid=%s silent_s=%.1f", self.pid,
                      now - self.heard)
            self.kill()

    def _open_reader(self, rid: int, start: int) -> None:
        reader = self.owner.audio.reader(start)
        task = asyncio.get_running_loop().create_task(self._stream(rid, reader))
        self._readers[rid] = (reader, task)

    async def _stream(self, rid: int, reader: AudioReader) -> None:
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


class RemoteSupervisor:
    """The `Supervisor` API, each session in a child process (see the module docstring)."""

    def __init__(self, config: Config, audio: AudioPort, emit: Callable[[Event], None], *, warm: bool = True,
                 factory: str | None = None, identity: str | None = None) -> None:
        self._cfg = config
        self.audio = audio
        self._emit_cb = emit
        self._warm = warm
        self._factory = factory
        self._identity = build_request(config.livekit, identity=identity).participant_identity  # for every child
        self._muted = False
        self._unmuted_at = 0  # the ring index of the last unmute: a session this supervisor starts by itself (an
        #                        always_on restart) takes nothing from before it (the daemon clamps its own starts)
        self.current: Child | None = None
        self._children: set[Child] = set()
        self._spare: asyncio.Task[Child] | None = None  # the next session's child, starting or ready
        self._respawns = _respawn_backoff()  # children that failed to start or died, in a row
        self._kept = SessionStatus()  # what retired children leave: metrics summed, last failure and transcripts
        self._session = 0  # the device machine's number of the latest session asked for
        self.closed = False
        self.interrupting = False  # an InterruptCall is on its way: the agent's audio that arrives is dropped
        self._started = 0  # children started so far
        self._bg: set[asyncio.Task[None]] = set()
        self._silent_limit = config.session.process_hang_s  # a ready child speaks every second; silent, it is hung
        self._crashes = _respawn_backoff()  # sessions lost to a dead child since one last ended normally
        self._timers: set[asyncio.Task[None]] = set()
        self._monitor = asyncio.get_running_loop().create_task(self._watch())
        if warm:
            self._prepare()

    # ---- the Supervisor API ----------------------------------------------------------------------------------

    async def start(self, mark: int, *, session: int = 0, listen_from: int | None = None) -> None:
        await self._start(StartCall(mark, session, listen_from))

    async def start_turn(self, mark: int | None = None, *, session: int = 0) -> None:
        mark = self.audio.mark(self._cfg.audio.preroll_ms) if mark is None else mark
        await self._start(StartTurnCall(mark, session))

    async def _start(self, request: StartCall | StartTurnCall) -> None:
        self._session = request.session
        self._cancel_restart()  # this start is the session now
        for _ in range(2):
            child = await self._child_or_fail(request.session)
            if child is None:
                return
            try:
                await child.call(request)
            except ChildGone:
                if child.crashed or self.closed:
                    return  # already shown as failed(internal)
            else:
                if child is self.current or self.closed:
                    return
            # The start reached a child whose session was ending (queued behind its end): that child was retired
            # with it, and closing it ends what the start began there. Start again in a fresh one.
            log.info("start reached a session process that was ending; starting again in a fresh one")

    async def end(self, reason: str = "requested") -> None:
        # An end during an always_on restart's back-off reaches no process: it must still stop the restart, or a
        # room opens behind a device that shows idle.
        if self._cancel_restart():
            log.info("restart of the lost session cancelled reason=%s", reason)
        await self._if_running(EndCall(reason))

    async def end_turn(self) -> None:
        await self._if_running(EndTurnCall())

    async def cancel_turn(self) -> None:
        await self._if_running(CancelTurnCall())

    async def interrupt(self) -> None:
        # The agent's audio the child sent before it took the call is on its way still: the channel is ordered, so
        # everything that arrives before the reply is from before the interruption, and is dropped too.
        self.interrupting = True
        try:
            await self._if_running(InterruptCall())
        finally:
            self.interrupting = False

    async def set_muted(self, muted: bool) -> None:
        if self._muted and not muted:
            self._unmuted_at = self.audio.mark(0)
        self._muted = muted
        child = self.current
        if child is not None:
            child.muted = muted
        await self._if_running(SetMutedCall(muted))

    async def send_text(self, text: str) -> None:
        child = self.current
        if child is None or not _ready(child):
            raise SessionError("no session is connected; start one first (press the button or `voice-device start`)")
        await child.call(SendTextCall(text))

    async def refresh(self) -> None:
        """Bring `status()` up to date (the child pushes it every 0.1 s and on every event; this is exact)."""
        child = self.current
        if child is not None and _ready(child):
            with contextlib.suppress(SessionError, TimeoutError):
                await asyncio.wait_for(child.call(RefreshCall()), REFRESH_TIMEOUT_S)

    async def wait_quiet(self) -> None:
        await self._if_running(WaitQuietCall())

    def status(self) -> SessionStatus:
        child = self.current
        status = child.status if child is not None else idle_status(self._cfg)
        return replace(status.carried_over(self._kept), muted=self._muted,
                       process=ProcessStatus(child.pid if child else None, self._started))

    async def aclose(self) -> None:
        """End the session (CLIENT_INITIATED) and stop every child; a child still busy after the grace is killed,
        and a cancelled close (the daemon's stop budget) kills them all."""
        if self.closed:
            return
        self.closed = True
        self._monitor.cancel()
        for timer in self._timers:
            timer.cancel()
        try:
            if self._spare is not None and not self._spare.done():
                self._spare.cancel()
                await asyncio.gather(self._spare, return_exceptions=True)
            await asyncio.gather(*(c.close(self._grace()) for c in list(self._children)), return_exceptions=True)
            await asyncio.gather(*self._bg, return_exceptions=True)
        finally:
            for child in list(self._children):
                child.kill()

    # ---- children --------------------------------------------------------------------------------------------

    async def _watch(self) -> None:
        # After a stall of this loop itself, the reader tasks run before this timer (asyncio runs I/O callbacks
        # first) and mark whatever the children sent meanwhile as heard: a blocked daemon kills no healthy child.
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self._silent_limit / 2))
            for child in list(self._children):
                child.check(loop.time(), self._silent_limit)

    def _grace(self) -> float:
        return CLOSE_GRACE_S + self._cfg.session.connect_timeout_s

    def _hello(self) -> Hello:
        root, lk = logging.getLogger(), logging.getLogger("livekit")
        return Hello(
            config=self._cfg,
            identity=self._identity,
            muted=self._muted,
            volume=float(self.audio.player.volume),
            sample_rate=self.audio.sample_rate,
            factory=self._factory,
            log_levels=(("", root.getEffectiveLevel()), ("livekit", lk.getEffectiveLevel())),
        )

    def _prepare(self) -> asyncio.Task[Child]:
        """The spare: the child the next session will run in, started now unless one is starting or ready."""
        spare = self._spare
        if spare is None or (spare.done() and (spare.cancelled() or spare.exception() is not None
                                               or not spare.result().alive)):
            spare = self._spare = asyncio.get_running_loop().create_task(self._spawn())
            spare.add_done_callback(_log_spawn_failure)
        return spare

    async def _spawn(self) -> Child:
        if self._respawns.failures:
            await asyncio.sleep(self._respawns.ceiling)
        child = Child(self)
        self._started += 1
        self._children.add(child)
        try:
            await child.spawn(self._hello())
        except Exception as e:
            child.kill()
            self._children.discard(child)
            self._respawns.next_delay()
            raise SessionError(f"the session process could not be started: {e}") from None
        child.ready.add_done_callback(lambda f: f.cancelled() or f.exception())  # read here or by the caller
        try:
            await asyncio.wait_for(asyncio.shield(child.ready), READY_TIMEOUT_S)
        except TimeoutError:
            child.kill()
            self._respawns.next_delay()
            raise SessionError(f"the session process did not start within {READY_TIMEOUT_S:.0f} s") from None
        except SessionError:
            self._respawns.next_delay()
            raise
        self._respawns.reset()
        return child

    async def _child_or_fail(self, session: int) -> Child | None:
        """The ready child, starting one if needed; None (and the session shown as failed) if none can start."""
        self._check_open()
        child = self.current
        if child is not None and _ready(child) and child.alive:
            return child
        try:
            async with asyncio.timeout(PRESS_WAIT_S):
                while not (child := await asyncio.shield(self._prepare())).alive:
                    pass  # the spare died while waiting: _prepare starts another
        except (SessionError, OSError, TimeoutError) as e:
            detail = str(e) or f"no session process ready within {PRESS_WAIT_S:.0f} s (still starting)"
            log.error("session process unavailable error=%s", detail)
            self.emit(SessionFailed(FailureReason.INTERNAL, detail, session=session))
            return None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if (task is not None and task.cancelling()) or not self.closed:
                raise
            return None  # aclose() cancelled the spare we waited for (a reload): nothing to start
        self._spare = None
        self.current = child
        if child.muted != self._muted:  # muted while this one waited as the spare
            with contextlib.suppress(ChildGone):
                await child.call(SetMutedCall(self._muted))
            child.muted = self._muted
        return child

    def _check_open(self) -> None:
        if self.closed:
            raise SessionError("the session supervisor is closed")

    async def _if_running(self, request: Request) -> None:
        child = self.current
        if child is not None and _ready(child):
            with contextlib.suppress(ChildGone):  # its session is over: nothing left to end, mute or wait for
                await child.call(request)

    def session_over(self, child: Child) -> None:
        """The child's session ended: retire it. A start already on its way to it is made again in a fresh one
        (`_start`), so a child never serves a second session."""
        if child is not self.current or self.closed:
            return
        self._crashes.reset()
        self._retire(child)
        if self._warm:
            self._prepare()  # the next one starts now, not during a session: its import would compete for CPU

    def _retire(self, child: Child) -> None:
        self.current = None
        self._kept = child.status.carried_over(self._kept)
        task = asyncio.get_running_loop().create_task(child.close(self._grace()))
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def _gone(self, child: Child, code: int | None) -> None:
        self._children.discard(child)
        if self._warm and not self.closed:
            self._prepare()  # a spare that died is replaced (with backoff if they keep dying)
        if child is not self.current:
            log.debug("session process exited pid=%s code=%s", child.pid, code)
            return
        # a current child is retired when its session ends: idle with a start sent means that start is pending
        in_session = child.status.phase != "idle" or child.starts > 0
        child.crashed = True
        self._retire(child)
        if self.closed:
            return
        log.error("session process exited unexpectedly pid=%s code=%s in_session=%s", child.pid, code, in_session)
        self._respawns.next_delay()
        if in_session:
            why = "stopped answering and was stopped" if child.hung else f"exited with code {code}"
            retry = None
            if self._cfg.session.profile.keeps_session:  # nobody presses a smart speaker: start again, in a new one
                retry = self._crashes.next_delay() or 0.0  # never None: no attempt limit
                self._later(retry, self._restart_kept_session)
            self.emit(SessionFailed(FailureReason.INTERNAL, f"the session process {why}", retry,
                                    session=child.session))

    def _cancel_restart(self) -> bool:
        """Cancel a pending restart of a lost session; whether there was one."""
        pending = [t for t in self._timers if not t.done() and t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        return bool(pending)

    def _later(self, delay: float, fn: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            await fn()

        task = asyncio.get_running_loop().create_task(run())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _restart_kept_session(self) -> None:
        if not self.closed and self.current is None:
            # mute means mute: the pre-roll never reaches back into what was captured before the last unmute
            mark = max(self.audio.mark(self._cfg.audio.preroll_ms), self._unmuted_at)
            await self.start(mark, session=self._session)

    # ---- to the daemon ---------------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        try:
            self._emit_cb(event)
        except Exception:
            log.exception("event consumer failed event=%r", event)

    def play(self, data: bytes, rate: int, channels: int, samples: int) -> None:
        from livekit import rtc

        self.audio.player.push(rtc.AudioFrame(data, rate, channels, samples))


def _respawn_backoff() -> Backoff:
    return Backoff(RESPAWN_BASE_S, RESPAWN_CAP_S, jitter=False)


def _log_spawn_failure(task: asyncio.Task[Child]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("session process start failed error=%s", task.exception())


def _ready(child: Child) -> bool:
    return child.ready.done() and not child.ready.cancelled() and child.ready.exception() is None
