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
A child that dies in a session ends it as `failed(internal)` with its exit code in the log (always_on starts it
again: `restart.py`); a child that cannot start at all is retried with backoff, and a press meanwhile gets a sentence
saying so. The children themselves are `child.py`'s, kept by `pool.py`; every wait is on the session clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from device.config.schema import Config
from device.core.vocabulary import Event, FailureReason, SessionFailed
from device.session.clock import Clock, LoopClock, Timer, within
from device.session.marks import Marks
from device.session.ports import DaemonAudio
from device.session.process.child import Child, ChildGone, idle_status
from device.session.process.pool import Pool
from device.session.process.protocol import (
    CancelTurnCall,
    EndCall,
    EndTurnCall,
    Hello,
    InterruptCall,
    RefreshCall,
    Request,
    SendTextCall,
    SetMutedCall,
    StartCall,
    StartTurnCall,
    WaitQuietCall,
)
from device.session.process.restart import Restarts
from device.session.status import ProcessStatus, SessionStatus
from device.session.supervisor import SessionError
from device.session.tokens import build_request

log = logging.getLogger("device.session.process.remote")

REFRESH_TIMEOUT_S = 1.0  # a control client's snapshot waits at most this for a busy session process
PRESS_WAIT_S = 15.0  # a press waits this long for a session process still starting, then fails (internal)
CLOSE_GRACE_S = 5.0  # a retired child's own disconnect; it is killed after this (plus its connect deadline)


class RemoteSupervisor:
    """The `Supervisor` API, each session in a child process (see the module docstring)."""

    def __init__(self, config: Config, audio: DaemonAudio, emit: Callable[[Event], None], *, warm: bool = True,
                 factory: str | None = None, identity: str | None = None, clock: Clock | None = None,
                 marks: Marks | None = None) -> None:
        self._cfg = config
        self.audio = audio
        self.clock = clock or LoopClock()
        self._emit_cb = emit
        self._factory = factory
        self._identity = build_request(config.livekit, identity=identity).participant_identity  # for every child
        self._muted = False
        self._marks = marks or Marks(audio, config.audio.preroll_ms)  # where an always_on restart's audio begins
        self.current: Child | None = None
        self._kept = SessionStatus()  # what retired children leave: metrics summed, last failure and transcripts
        self._session = 0  # the device machine's number of the latest session asked for
        self.closed = False
        self.lost = 0  # children that exited while serving the device (crashed, or hung and stopped)
        self.interrupting = False  # an InterruptCall is on its way: the agent's audio that arrives is dropped
        self._restarts = Restarts(config.session.profile.keeps_session)
        self._restart_timer: Timer | None = None  # the restart's back-off, on the clock
        self._restarting: asyncio.Task[None] | None = None  # the restart's start, once due
        self.pool = Pool(lambda: Child(self), self._hello, self.clock, warm=warm,
                         grace_s=CLOSE_GRACE_S + config.session.connect_timeout_s,
                         silent_limit_s=config.session.process_hang_s)

    # ---- the Supervisor API ----------------------------------------------------------------------------------

    async def start(self, mark: int, *, session: int = 0, listen_from: int | None = None) -> None:
        await self._start(StartCall(mark, session, listen_from))

    async def start_turn(self, mark: int, *, session: int = 0) -> None:
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
        self._muted = muted
        child = self.current
        if child is not None:
            child.muted = muted
        await self._if_running(SetMutedCall(muted))

    async def send_text(self, text: str) -> None:
        child = self.current
        if child is None or not child.is_ready:
            raise SessionError("no session is connected; start one first (press the button or `voice-device start`)")
        await child.call(SendTextCall(text))

    async def refresh(self) -> None:
        """Bring `status()` up to date (the child pushes it every 0.1 s and on every event; this is exact)."""
        child = self.current
        if child is not None and child.is_ready:
            with contextlib.suppress(SessionError, TimeoutError):
                await within(self.clock, child.call(RefreshCall()), REFRESH_TIMEOUT_S)

    async def wait_quiet(self) -> None:
        await self._if_running(WaitQuietCall())

    def status(self) -> SessionStatus:
        child = self.current
        status = child.status if child is not None else idle_status(self._cfg)
        return replace(status.carried_over(self._kept), muted=self._muted,
                       process=ProcessStatus(child.pid if child else None, self.pool.started, self.lost,
                                             self.pool.spare_pid()))

    async def aclose(self) -> None:
        """End the session (CLIENT_INITIATED) and stop every child; a child still busy after the grace is killed,
        and a cancelled close (the daemon's stop budget) kills them all."""
        if self.closed:
            return
        self.closed = True
        self._cancel_restart()
        await self.pool.aclose()

    # ---- children --------------------------------------------------------------------------------------------

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

    async def _child_or_fail(self, session: int) -> Child | None:
        """The ready child, starting one if needed; None (and the session shown as failed) if none can start."""
        self._check_open()
        child = self.current
        if child is not None and child.is_ready and child.alive:
            return child
        try:
            child = await self.pool.take(PRESS_WAIT_S)
        except (SessionError, OSError) as e:  # a TimeoutError (an OSError) says nothing: none was ready in time
            detail = (not isinstance(e, TimeoutError) and str(e)) or \
                f"no session process ready within {PRESS_WAIT_S:.0f} s (still starting)"
            log.error("session process unavailable error=%s", detail)
            self.emit(SessionFailed(FailureReason.INTERNAL, detail, session=session))
            return None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if (task is not None and task.cancelling()) or not self.closed:
                raise
            return None  # aclose() cancelled the spare we waited for (a reload): nothing to start
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
        if child is not None and child.is_ready:
            with contextlib.suppress(ChildGone):  # its session is over: nothing left to end, mute or wait for
                await child.call(request)

    def session_over(self, child: Child) -> None:
        """The child's session ended: retire it. A start already on its way to it is made again in a fresh one
        (`_start`), so a child never serves a second session."""
        if child is not self.current or self.closed:
            return
        self._restarts.ended()
        self._retire(child)
        self.pool.refill()  # the next one starts now, not during a session: its import would compete for CPU

    def _retire(self, child: Child) -> None:
        self.current = None
        self._kept = child.status.carried_over(self._kept)
        self.pool.retire(child)

    # ---- what a child reports (child.Owner) ------------------------------------------------------------------

    def idle_status(self) -> SessionStatus:
        return idle_status(self._cfg)

    def serves(self, child: Child) -> bool:
        return child is self.current and not self.closed

    def gone(self, child: Child, code: int | None) -> None:
        self.pool.gone(child)
        if child is not self.current:
            log.debug("session process exited pid=%s code=%s", child.pid, code)
            return
        # a current child is retired when its session ends: idle with a start sent means that start is pending
        in_session = child.status.phase != "idle" or child.starts > 0
        child.crashed = True
        self._retire(child)
        if self.closed:
            return
        self.lost += 1
        log.error("session process exited unexpectedly pid=%s code=%s in_session=%s", child.pid, code, in_session)
        self.pool.failed()
        if in_session:
            why = "stopped answering and was stopped" if child.hung else f"exited with code {code}"
            retry = self._restarts.lost()
            if retry is not None:
                self._arm_restart(retry)
            self.emit(SessionFailed(FailureReason.INTERNAL, f"the session process {why}", retry,
                                    session=child.session))

    # ---- always_on: a lost session started again (restart.Restarts decides when) ----------------------------

    def _arm_restart(self, delay: float) -> None:
        if self._restart_timer is not None:
            self._restart_timer.cancel()
        self._restart_timer = self.clock.call_later(delay, self._restart_due)

    def _restart_due(self) -> None:
        self._restart_timer = None
        if self._restarts.due():
            self._restarting = asyncio.get_running_loop().create_task(self._restart_kept_session())

    def _cancel_restart(self) -> bool:
        """Call off a restart of a lost session, pending or on its way to a child; whether there was one."""
        pending = self._restarts.call_off()
        if self._restart_timer is not None:
            self._restart_timer.cancel()
            self._restart_timer = None
        task = self._restarting
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            pending = True
        return pending

    async def _restart_kept_session(self) -> None:
        if not self.closed and self.current is None:
            # mute means mute: the pre-roll never reaches back into what was captured before the last unmute
            await self.start(self._marks.press(), session=self._session)

    # ---- to the daemon ---------------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        try:
            self._emit_cb(event)
        except Exception:
            log.exception("event consumer failed event=%r", event)

    def play(self, data: bytes, rate: int, channels: int, samples: int) -> None:
        from livekit import rtc

        self.audio.player.push(rtc.AudioFrame(data, rate, channels, samples))
