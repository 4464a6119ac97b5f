"""The daemon: wires config → audio → controls → session on one asyncio loop, under systemd.

One event path: every event (button gesture, supervisor report, mic lost/restored, control command, timer)
goes through `App.feed` on the loop thread → `controls.machine.transition` → the LEDs and the status board in
the same tick → the effects, executed in order by one worker task (so StartSession always precedes StartTurn).

Health: READY=1 once audio and controls are up (never waiting for the network); WATCHDOG=1 only while the loop
answers and, while the engine holds the mic open, frames keep arriving. SIGTERM/SIGINT end the session and
close everything within 5 s; SIGHUP reloads the config, keeping the old one when the new one is invalid.
A config that still uses a profile's placeholders (`device/config/placeholders.py`) is refused at start-up (exit
2, the sentences of `voice-device check`) and on reload (the old one kept), as an invalid one is.

Exit codes: 0 clean stop, 1 a runtime failure (message logged), 2 configuration error, 75 a planned restart
(idle after a session with RSS above `daemon.restart_above_rss_mb`: the livekit SDK's native core keeps memory
per room connection, and a restart while nobody talks is the only way to give it back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any, assert_never

from device import __version__
from device.audio.mixer import MixerVolume, attach_mixer
from device.config import Config, ConfigError, load_config
from device.config.display import secret_values
from device.config.placeholders import placeholders
from device.core.log import redactor
from device.core.vocabulary import (
    ArmTimer,
    CancelTimer,
    CancelTurn,
    ChangeVolume,
    DeviceState,
    EndSession,
    EndTurn,
    Event,
    Interrupt,
    MuteRequested,
    PlayEarcon,
    SetMuted,
    ShellEffect,
    StartRequested,
    StartSession,
    StartTurn,
)
from device.daemon.commands import Command
from device.daemon.control import ControlError, ControlServer, ControlSocketInUse
from device.daemon.conversations import ConversationStats
from device.daemon.identity import kept_identity
from device.daemon.notify import Notifier, watchdog_interval
from device.daemon.outlets import configured
from device.daemon.outlets.control_socket import ControlSocketStatus
from device.daemon.outlets.hub import STATUS_POLL_S, StatusOutlets
from device.daemon.outlets.systemd import SystemdStatus
from device.daemon.saved import Saved, boot_clock, load, save, since_planned_restart, state_dir, state_path
from device.daemon.signals import SignalHandlers, stop_within
from device.daemon.status import DeviceStatus, WakeStatus
from device.daemon.wake import WakeService, build_wake
from device.daemon.watchdog import Watchdog

if TYPE_CHECKING:
    from device.audio.engine import AudioEngine
    from device.controls.machine import Snapshot
    from device.controls.simulator import Simulator
    from device.session.marks import Marks
    from device.session.ports import SessionPort

log = logging.getLogger("device.daemon.app")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
EXIT_RESTART = 75  # EX_TEMPFAIL: "restart me" (the unit restarts on it; see daemon.restart_above_rss_mb)
STOP_BUDGET_S = 5.0
# The session's share of the stop budget. A native connect in flight cannot be cancelled (the supervisor waits for
# its own deadline); past this the session is abandoned, so the board and the audio still close within the budget.
SESSION_CLOSE_S = 3.0


class Components:
    """Everything built from one configuration; a reload replaces the whole set."""

    def __init__(self, app: App, config: Config) -> None:
        from device.audio.engine import AudioEngine
        from device.controls.board import Board
        from device.controls.machine import initial
        from device.controls.timers import LoopTimers
        from device.session.marks import Marks
        loop = asyncio.get_running_loop()
        self.config = config
        # the software volume the user last set, remembered across reloads and restarts; audio.volume until then
        volume = config.audio.volume if app.saved.volume is None else app.saved.volume
        self.audio = AudioEngine(replace(config.audio, volume=volume), on_event=app.feed)
        self.board = Board(config.controls, loop, app.feed, simulate=app.simulate)  # hands over from gpiozero threads
        self.timers = LoopTimers(loop, app.feed)
        self.marks = Marks(self.audio, config.audio.preroll_ms)  # where a session's audio may begin (mute means mute)
        self.supervisor = make_supervisor(config, self.audio, app.feed, app.identity(config), self.marks)
        self.snapshot = initial(config.session.mode, config.controls.gestures)
        self.simulator: Simulator | None = None
        self.mixer: MixerVolume | None = None
        self.wake: WakeService | None = None
        self.wake_error: str | None = None
        if config.session.profile.wake_word:
            self.wake, self.wake_error = build_wake(config.wake_word, self.audio, app.feed)

    async def start(self, app: App) -> None:
        await self.audio.start()
        self.mixer = await attach_mixer(self.audio.player, self.config.audio.mixer, self.config.audio.mixer_device)
        if self.mixer is None:  # a mixer keeps its own level (and alsactl across reboots): only software's is saved
            self.audio.player.on_volume = app.volume_set
        if self.wake is not None and not app.muted:  # mute means mute: not even the wake word is listened for
            self.wake.start()
        self.board.show(self.snapshot)
        if app.simulate:
            from device.controls.simulator import Simulator

            self.simulator = Simulator(self.board, asyncio.get_running_loop(),
                                       on_quit=lambda: app.signals.request_stop("quit"))
            self.simulator.start()

    async def close(self) -> None:
        """End the session (CLIENT_INITIATED), close the sources and streams, LEDs off."""
        self.timers.close()
        try:
            await asyncio.wait_for(self.supervisor.aclose(), SESSION_CLOSE_S)
        except TimeoutError:
            log.warning("session close abandoned after %.0f s (a connect still in flight); closing audio and LEDs",
                        SESSION_CLOSE_S)
        finally:
            if self.simulator is not None:
                self.simulator.close()
            self.board.close()
            if self.wake is not None:
                await self.wake.close()
            await self.audio.stop()

    def wake_status(self) -> WakeStatus | None:
        if self.wake is not None:
            return self.wake.status()
        return WakeStatus(error=self.wake_error) if self.wake_error else None


class App:
    def __init__(self, config: Config, config_path: str, *, simulate: bool = False) -> None:
        self.config = config
        self.config_path = config_path
        self.simulate = simulate
        self.notifier = Notifier.from_env()
        self.status = StatusOutlets(details=self.device_status)
        if self.notifier.enabled:
            self.status.attach(SystemdStatus(self.notifier.status))
        self.status.configure(configured(config))
        self.signals = SignalHandlers(on_reload=self.reload)
        self.parts: Components | None = None
        self._effects: asyncio.Queue[ShellEffect] = asyncio.Queue()
        self._effect_worker: asyncio.Task[None] | None = None
        self._status_poll: asyncio.Task[None] | None = None
        self._starting: tuple[int, asyncio.Task[None]] | None = None  # the session whose start runs, and its task
        self._reload_error: str | None = None
        self._saved_at = state_path(config.daemon)
        # read once: from now on what is remembered is kept here and written through (`_remember`), so a file that
        # goes bad while running neither repeats its warning nor puts its fail-closed "muted" into later writes
        self.saved = load(self._saved_at)
        # mute survives reloads (kept here), restarts and reboots (the saved state); boot_muted overrides at start-up
        self.muted = config.daemon.boot_muted or self.saved.muted
        self._kept_identity: str | None = None
        self.reloads = 0
        self.conversations = ConversationStats()  # over the daemon's life, reloads included
        self.exit_code = EXIT_OK
        self._deferred_restart: asyncio.TimerHandle | None = None

    # ---- the one event path ----------------------------------------------------------------------------------

    def feed(self, event: Event) -> None:
        from device.controls.machine import Down, transition

        parts = self.parts
        if parts is None:
            return
        log.debug("event %r", event)
        before = parts.snapshot.state, parts.snapshot.reason
        was_muted = parts.snapshot.muted
        had_session = not isinstance(parts.snapshot.link, Down)
        parts.snapshot, effects = transition(parts.snapshot, event, time.monotonic())
        self.conversations.observe(event)
        snap = parts.snapshot
        parts.board.show(snap)
        if had_session and isinstance(snap.link, Down) and snap.state is DeviceState.IDLE:
            self._restart_if_bloated(parts.config.daemon.restart_above_rss_mb)
        if (snap.state, snap.reason) != before:
            if snap.reason is not None:
                log.info("state state=%s reason=%s detail=%s", snap.state, snap.reason,
                         snap.detail or snap.reason.message)
            else:
                log.info("state state=%s", snap.state)
        self._publish_state()
        self._abandon_start(snap)
        if was_muted and not snap.muted:
            parts.marks.unmuted()  # now, as the machine unmutes: a later start never reaches back past this
        mark: int | None = None
        for effect in effects:
            if isinstance(effect, StartSession | StartTurn):
                # a press's mark is taken now, not when the effect's turn comes: a press right after an end waits
                # for that end's teardown (seconds), and what the user says meanwhile belongs to the new session
                start = effect.mark
                if start is None:
                    mark = start = parts.marks.press() if mark is None else mark
                # mute means mute: a pre-roll (or a wake phrase) that began while muted starts at the unmute
                effect = replace(effect, mark=parts.marks.clamp(start))
            if isinstance(effect, StartSession):
                self.conversations.started(effect)  # now: the latency counts from the press or the detection
            if isinstance(effect, ArmTimer | CancelTimer):
                parts.timers.apply(effect)
            else:
                self._effects.put_nowait(effect)

    def _abandon_start(self, snap: Snapshot) -> None:
        """An end is an end: a start still on its way (waiting for its session process) when its session is ended,
        or another is asked for, is called off, so no room opens behind a device that shows idle."""
        if self._starting is None:
            return
        session, task = self._starting
        if _given_up(snap, session):
            task.cancel()

    def _wanted(self, session: int) -> bool:
        """Whether a start of `session` is still wanted when its effect gets its turn (effects run in order: an end
        that came meanwhile is queued behind it)."""
        parts = self.parts
        if parts is None or _given_up(parts.snapshot, session):
            log.info("start dropped: session %d was ended (or another asked for) before it began", session)
            return False
        return True

    async def _start(self, session: int, start: Coroutine[Any, Any, None]) -> None:
        """Run a start so that `_abandon_start` can call it off while it waits for its session process."""
        task = asyncio.ensure_future(start)
        self._starting = session, task
        try:
            await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if not task.cancelled() or (me is not None and me.cancelling()):
                raise
            log.info("start called off: session %d was ended before its session process took it", session)
        finally:
            self._starting = None

    def _restart_if_bloated(self, limit_mb: int) -> None:
        """Idle after a session (one that failed counts): exit 75 if RSS is above the limit — at least
        `daemon.restart_min_interval_s` after the previous planned restart of this boot (kept in the saved state),
        else once that much has passed, if still idle then. systemd counts every restart against the unit's start
        limit, exit 75 included (SuccessExitStatus= does not exempt it): unlimited, a daemon that is above the
        limit after every session would make the device dead after the fifth short session in five minutes."""
        rss = rss_mb()
        if not limit_mb or rss is None or rss <= limit_mb or self.exit_code == EXIT_RESTART:
            return
        since = since_planned_restart(self.saved)
        wait = 0.0 if since is None else self.config.daemon.restart_min_interval_s - since
        if wait > 0:
            if self._deferred_restart is None:
                log.info("planned restart deferred rss_mb=%.0f limit_mb=%d wait_s=%.0f (the previous one was %.0f s "
                         "ago; daemon.restart_min_interval_s=%.0f)", rss, limit_mb, wait, since,
                         self.config.daemon.restart_min_interval_s)
                self._deferred_restart = asyncio.get_running_loop().call_later(wait, self._deferred_restart_due)
            return
        log.warning("restarting to return memory rss_mb=%.0f limit_mb=%d (the livekit SDK keeps native memory "
                    "per session; systemd starts a fresh process)", rss, limit_mb)
        boot, now = boot_clock()
        self._remember(replace(self.saved, planned_restart_boot=boot, planned_restart_at=now))
        self.exit_code = EXIT_RESTART
        self.signals.request_stop("memory limit")

    def identity(self, config: Config) -> str:
        """`livekit.identity`, else the one kept for this device in the state directory (resolved once: the same
        for the daemon's life, every session and session process included)."""
        if config.livekit.identity:
            return config.livekit.identity
        if self._kept_identity is None:
            self._kept_identity = kept_identity(state_dir(config.daemon))
        return self._kept_identity

    def volume_set(self, volume: float) -> None:
        """The software volume was set (a volume button or command, the agent): remember it."""
        if volume != self.saved.volume:
            self._remember(replace(self.saved, volume=volume))

    def _remember(self, saved: Saved) -> None:
        self.saved = saved
        save(self._saved_at, saved)

    def _deferred_restart_due(self) -> None:
        from device.controls.machine import Down

        self._deferred_restart = None
        parts = self.parts
        if parts is None or not isinstance(parts.snapshot.link, Down) or parts.snapshot.state is not DeviceState.IDLE:
            return  # busy again (or reloading): the next session's end asks again
        self._restart_if_bloated(parts.config.daemon.restart_above_rss_mb)

    def _publish_state(self) -> None:
        parts = self.parts
        if parts is None:
            return
        snap = parts.snapshot
        reason = str(snap.reason) if snap.reason else self._reload_error
        self.status.set_state(str(snap.state), reason)

    async def _run_effects(self) -> None:
        while True:
            effect = await self._effects.get()
            try:
                await self._execute(effect)
            except Exception:
                log.exception("effect failed effect=%s", type(effect).__name__)
            self._update_status()  # e.g. the volume a button moved

    async def _poll_status(self) -> None:
        """What changes outside the event path (the session's transcripts and counts, the volume the agent set)
        reaches the outlets within STATUS_POLL_S."""
        while True:
            await asyncio.sleep(STATUS_POLL_S)
            self._update_status()

    def _update_status(self) -> None:
        if self.parts is not None:  # not while reloading: without its parts the device has no volume, no session
            self.status.update()

    async def _execute(self, effect: ShellEffect) -> None:
        parts = self.parts
        if parts is None:
            return
        audio, supervisor, marks = parts.audio, parts.supervisor, parts.marks
        match effect:
            case StartSession(session=session, mark=mark, listen_from=listen_from):
                if not self._wanted(session):
                    return
                # a wake word's mark is where its phrase began (or ended); a press's is the pre-roll before the press
                # (stamped by feed); the ring may have let it go since, which the session counts as lost
                start = marks.press() if mark is None else mark
                await self._start(session, supervisor.start(start, session=session, listen_from=listen_from))
            case EndSession(reason=reason):
                await supervisor.end(reason)
            case StartTurn(session=session, mark=mark):
                if not self._wanted(session):
                    return
                await self._start(session, supervisor.start_turn(marks.press() if mark is None else mark,
                                                                 session=session))
            case EndTurn():
                await supervisor.end_turn()
            case CancelTurn():
                await supervisor.cancel_turn()
            case Interrupt():
                audio.player.flush()  # at once, here: the speaker stops before the session process hears of it
                await supervisor.interrupt()
            case SetMuted(muted=muted):
                self.muted = muted
                self._remember(replace(self.saved, muted=muted))
                if parts.wake is not None:
                    await parts.wake.set_muted(muted)
                await supervisor.set_muted(muted)
            case ChangeVolume(delta=delta):
                audio.player.volume = min(1.0, max(0.0, audio.player.volume + delta))
                log.info("volume volume=%.2f", audio.player.volume)
            case PlayEarcon(name=name):
                audio.play_earcon(name)
            case _:
                assert_never(effect)  # a new effect without its case here is a type error

    # ---- control socket ----------------------------------------------------------------------------------------

    async def handle(self, cmd: Command) -> None:
        parts = self.parts
        if parts is None:
            raise ControlError("the daemon is reloading; try again in a moment")
        if cmd.spec.event is not None:
            from device.controls.machine import start_refused

            event = cmd.spec.event()
            if isinstance(event, StartRequested) and (why := start_refused(parts.snapshot)) is not None:
                raise ControlError(why)
            self.feed(event)
            return
        match cmd.name:
            case "say":
                from device.session.supervisor import SessionError

                try:
                    await parts.supervisor.send_text(cmd.text)
                except SessionError as e:
                    raise ControlError(str(e)) from None
            case "press" | "release":
                button = parts.board.buttons.get("main")
                if button is None:
                    raise ControlError("no main button is configured (controls.button)")
                pressed = cmd.name == "press"
                low = pressed == button.config.pull_up  # a pulled-up button reads pressed when low
                (button.pin.drive_low if low else button.pin.drive_high)()
            case other:
                raise ControlError(f"command {other!r} has no handler in this daemon")

    def device_status(self) -> DeviceStatus:
        """What every outlet shows beside the state (the outlets stamp state, reason and since)."""
        from device.controls.machine import client_flags

        parts = self.parts
        if parts is None:
            return DeviceStatus(version=__version__, reloads=self.reloads, reload_error=self._reload_error)
        snap = parts.snapshot
        return DeviceStatus(
            version=__version__,
            message=snap.reason.message if snap.reason else "",
            detail=snap.detail,
            muted=snap.muted,
            volume=round(parts.audio.player.volume, 3),
            mic_open=parts.audio.mic_open,
            flags=client_flags(snap),
            session=parts.supervisor.status(),
            audio=parts.audio.stats(),
            wake=parts.wake_status(),
            conversations=self.conversations.status(),
            reloads=self.reloads,
            reload_error=self._reload_error,
        )

    async def _refresh_status(self) -> None:
        parts = self.parts
        if parts is not None:
            await parts.supervisor.refresh()

    def health(self) -> tuple[bool, float | None]:
        """(the mic should be delivering, when it last did): a stream the engine holds open that stays silent
        means a hung device or loop, and systemd restarts us. A mic known to be missing is the engine's to
        reopen (and shown as failed), not a reason to restart. Before the first block arrives nothing is
        expected yet: a stream that never delivers is caught by the engine's own stall check, which reopens it."""
        parts = self.parts
        if parts is None:
            return False, None
        last = parts.audio.last_capture_monotonic
        if not last:
            return False, None
        return parts.audio.mic_open, last

    # ---- lifecycle -------------------------------------------------------------------------------------------

    async def _bring_up(self, config: Config) -> None:
        parts = Components(self, config)
        self.parts = parts
        await parts.start(self)
        self._publish_state()
        if self.muted:  # before any session: nothing the mic hears may leave the device first
            log.info("starting muted (saved state or daemon.boot_muted)")
            self.feed(MuteRequested(True))
        if config.session.profile.starts_at_boot:
            self.feed(StartRequested())

    async def reload(self) -> None:
        self.notifier.reloading("reloading configuration")
        try:
            new = load_config(self.config_path)
            if problems := placeholders(new):
                raise problems[0]  # as at start-up: a device on them could only ever show `unreachable`
        except ConfigError as e:
            self._reload_error = f"reload failed, old configuration kept: {e}"
            log.error("reload failed, keeping the running configuration error=%s", e)
            self._publish_state()
            self.notifier.ready(self.status.text)
            return
        self._reload_error = None
        self.reloads += 1
        redactor().add(secret_values(new))
        old, self.parts = self.parts, None
        if old is not None:
            await old.close()
        self.config = new
        self.status.configure(configured(new))
        self._saved_at = state_path(new.daemon)
        try:
            await self._bring_up(new)
        finally:
            log.info("reloaded config=%s", self.config_path)
            self.notifier.ready(self.status.text)

    async def run(self) -> int:
        self.signals.install()
        from device.controls.board import BoardError

        try:
            await self._bring_up(self.config)
        except BoardError as e:
            log.error("controls unavailable: %s", e)
            return EXIT_FAILURE
        self._effect_worker = asyncio.create_task(self._run_effects(), name="effects")
        self._status_poll = asyncio.create_task(self._poll_status(), name="status")
        server = ControlServer(self.config.daemon.control_socket, self, self.status.snapshot,
                               mode=self.config.daemon.control_socket_mode, simulate=self.simulate,
                               refresh=self._refresh_status)
        self.status.attach(ControlSocketStatus(server.publish_state))
        try:
            await server.start()
        except (ControlSocketInUse, OSError) as e:
            log.error("control socket unavailable path=%s error=%s", self.config.daemon.control_socket, e)
            await self._shutdown(None)
            return EXIT_FAILURE
        interval = watchdog_interval() if self.config.daemon.watchdog else None
        watchdog = Watchdog(self.notifier, interval, self.health) if interval else None
        if watchdog:
            watchdog.start()
        self.notifier.ready(self.status.text)
        log.info("ready state=%s control=%s simulate=%s", self.status.state, self.config.daemon.control_socket,
                 self.simulate)
        why = await self.signals.wait_for_stop()
        log.info("stopping signal=%s", why)
        self.notifier.stopping("stopping")
        if watchdog:
            watchdog.stop()
        clean = await stop_within(self._shutdown(server), STOP_BUDGET_S)
        if not clean:
            log.warning("shutdown did not finish within %.0f s; exiting anyway", STOP_BUDGET_S)
        return self.exit_code

    async def _shutdown(self, server: ControlServer | None) -> None:
        parts, self.parts = self.parts, None
        if self._deferred_restart is not None:
            self._deferred_restart.cancel()
        try:
            if parts is not None:
                await parts.close()
        finally:
            for task in (self._effect_worker, self._status_poll):
                if task is not None:
                    task.cancel()
            self.status.close()
            if server is not None:
                await server.close()
            self.notifier.close()


def _given_up(snap: Snapshot, session: int) -> bool:
    """The device no longer wants `session` started: it was ended, or another was asked for since."""
    from device.controls.machine import Down

    return snap.session != session or isinstance(snap.link, Down)


def make_supervisor(config: Config, audio: AudioEngine, emit: Callable[[Event], None], identity: str,
                    marks: Marks) -> SessionPort:
    """The session supervisor, in this process or one child process per session (`session.process`); `marks` is
    where the always_on restarts of a session process begin (the daemon's own starts are stamped in `feed`)."""
    if config.session.process == "inline":
        from device.session.supervisor import Supervisor

        return Supervisor(config, audio, emit, identity=identity)
    from device.session.process.remote import RemoteSupervisor

    return RemoteSupervisor(config, audio, emit, warm=config.session.process == "warm", identity=identity,
                            marks=marks)


def rss_mb() -> float | None:
    """This process's resident memory in MB (Linux /proc), None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def run(config_path: str, *, simulate: bool = False, verbosity: int = 0) -> int:
    """The `voice-device run` command."""
    import faulthandler

    from device.core.log import setup_logging, stderr_stream

    try:
        config = load_config(config_path)
    except ConfigError as e:
        print(f"voice-device: {e}", file=sys.stderr)
        return EXIT_CONFIG
    # the profiles' placeholders load (so that `check` can name them) but cannot work: refused as `check` does,
    # rather than a daemon that says `unreachable` about a server nobody configured
    if problems := placeholders(config):
        for problem in problems:
            print(f"voice-device: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.logging.level, verbosity, secrets=secret_values(config))
    # Python's own writes (an uncaught thread's traceback, a fault's dump) share the log's stream: fd 2 is
    # /dev/null whenever PortAudio probes (audio.devices.quiet_stderr), and that can be at any moment
    sys.stderr = stderr_stream()
    if faulthandler.is_enabled():
        faulthandler.enable(file=sys.stderr)
    app = App(config, config_path, simulate=simulate)
    try:
        code = asyncio.run(app.run())
    except KeyboardInterrupt:
        code = EXIT_OK
    # The livekit SDK's native threads can abort the interpreter at exit when a connect was abandoned at the
    # stop budget: everything is closed and flushed, so leave without running native destructors.
    logging.shutdown()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
