"""What the device remembers across a reload, a restart and a reboot: whether it is muted, the software volume the
user last set (buttons, `ctl volume-up/down`, the agent's `device.set_volume`; `audio.volume` is only the first
start's; with an ALSA mixer the mixer keeps its own level and nothing is saved here), and when (in this boot) it last
restarted itself to return memory, so that planned restarts stay rate-limited across them.

Kept as JSON in `daemon.state_dir` (systemd's StateDirectory by default), replaced atomically, so mute means mute
after a power cut too. No file is a first boot: not muted. A file that is there but cannot be read, is not JSON, or
has no boolean `muted` fails closed: the device starts muted (mute's last value is unknown, and "muted" is the
promise that can be kept), with one warning naming the file and saying how to unmute, which rewrites it. A file
that cannot be written is reported and the device goes on. The daemon reads the file once at start-up and keeps
what it remembers in memory from then on: a file that goes bad later changes nothing until the next start.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from device.config.schema import DaemonConfig
from device.daemon.status import write_json_file

log = logging.getLogger("device.daemon.saved")

FILE_NAME = "state.json"


@dataclass(frozen=True)
class Saved:
    muted: bool = False
    volume: float | None = None  # the software volume last set, 0.0 to 1.0; None: never set (audio.volume holds)
    # the last planned restart (exit 75): the boot it happened in and CLOCK_BOOTTIME then (both "": none)
    planned_restart_boot: str = ""
    planned_restart_at: float = 0.0


def boot_clock() -> tuple[str, float]:
    """(this boot's id, seconds since it started): a clock no wall-clock jump moves (a Pi has no RTC: NTP sets
    the time after boot), reset by a reboot as systemd's start-limit counters are."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = "unknown"
    return boot, time.clock_gettime(time.CLOCK_BOOTTIME)


def since_planned_restart(saved: Saved) -> float | None:
    """Seconds since the last planned restart in this boot; None if there was none."""
    boot, now = boot_clock()
    if saved.planned_restart_boot != boot:
        return None
    return max(0.0, now - saved.planned_restart_at)


def state_dir(config: DaemonConfig, env: dict[str, str] | None = None) -> Path | None:
    """`daemon.state_dir`, else systemd's $STATE_DIRECTORY (its first entry), else None (nothing is kept)."""
    environ = os.environ if env is None else env
    directory = config.state_dir or environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(directory) if directory else None


def state_path(config: DaemonConfig, env: dict[str, str] | None = None) -> Path | None:
    """The state file in `state_dir`; None when there is none."""
    directory = state_dir(config, env)
    return directory / FILE_NAME if directory else None


def load(path: Path | None) -> Saved:
    """What `path` says; `Saved()` (not muted) when there is no path or no file yet, `UNREADABLE` (muted) when the
    file is there but says nothing trustworthy about mute."""
    if path is None:
        return Saved()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return Saved()
    except OSError as e:
        return _unreadable(path, e.strerror or str(e))
    except ValueError as e:  # not UTF-8, or not JSON
        return _unreadable(path, f"not JSON ({e})")
    if not isinstance(data, dict) or not isinstance(data.get("muted"), bool):
        return _unreadable(path, 'not a JSON object with a boolean "muted"')
    boot, at = data.get("planned_restart_boot"), data.get("planned_restart_at")
    if not (isinstance(boot, str) and isinstance(at, int | float) and not isinstance(at, bool)):
        boot, at = "", 0.0
    return Saved(muted=data["muted"], volume=_volume(data.get("volume"), path), planned_restart_boot=boot,
                 planned_restart_at=float(at))


def _volume(value: object, path: Path) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return float(value)
    log.warning("saved volume ignored path=%s volume=%r (not a number from 0 to 1); audio.volume applies until the "
                "volume is set again", path, value)
    return None


UNREADABLE = Saved(muted=True)


def _unreadable(path: Path, why: str) -> Saved:
    log.warning("saved state unreadable path=%s error=%s; starting MUTED, as mute's last value is unknown: unmute "
                "with `voice-device ctl unmute`, which rewrites the file", path, why)
    return UNREADABLE


def save(path: Path | None, saved: Saved) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_file(path, {"muted": saved.muted, "volume": saved.volume,
                               "planned_restart_boot": saved.planned_restart_boot,
                               "planned_restart_at": saved.planned_restart_at})
    except OSError as e:
        log.warning("saved state not written path=%s error=%s; mute and volume will not survive a restart", path,
                    e.strerror or e)
