"""What the device remembers across a reload, a restart and a reboot: today, whether it is muted.

Kept as JSON in `daemon.state_dir` (systemd's StateDirectory by default), replaced atomically, so mute means mute
after a power cut too. A file that cannot be read is reported once and treated as "not muted" only when
`daemon.boot_muted` does not say otherwise; a file that cannot be written is reported and the device goes on.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from device.config.schema import DaemonConfig
from device.daemon.status import write_json_file

log = logging.getLogger("device.daemon.saved")

FILE_NAME = "state.json"


@dataclass(frozen=True)
class Saved:
    muted: bool = False


def state_path(config: DaemonConfig, env: dict[str, str] | None = None) -> Path | None:
    """`daemon.state_dir`, else systemd's $STATE_DIRECTORY (its first entry), else None (nothing is kept)."""
    environ = os.environ if env is None else env
    directory = config.state_dir or environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(directory) / FILE_NAME if directory else None


def load(path: Path | None) -> Saved:
    if path is None:
        return Saved()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return Saved()
    except (OSError, ValueError) as e:
        log.warning("saved state unreadable path=%s error=%s; starting unmuted unless daemon.boot_muted", path, e)
        return Saved()
    muted = data.get("muted") if isinstance(data, dict) else None
    return Saved(muted=muted is True)


def save(path: Path | None, saved: Saved) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_file(path, {"muted": saved.muted})
    except OSError as e:
        log.warning("saved state not written path=%s error=%s; mute will not survive a restart", path,
                    e.strerror or e)
