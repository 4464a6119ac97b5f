"""The device's participant identity when `livekit.identity` does not set one: generated once per device (random)
and kept in the state directory (`daemon.state_dir` / systemd's StateDirectory), so it is the same across restarts,
reloads and reboots, and different on every device made from one SD-card image.

Not the machine id (`/etc/machine-id`, hashed: the old default): every card written from one image carries the
same one unless the image empties it, so such devices shared one identity — one participant to the token
endpoint, and in a fixed room (`livekit.room`) each one's join took the other's place (LiveKit lets one
participant per identity into a room: DUPLICATE_IDENTITY). Not the Raspberry Pi's serial either: not every board
has one (any other Debian machine, some Pi-class boards), and an identity derived from hardware goes with the
hardware, not with the device's own state. A card cloned after its first start copies the kept file too; nothing
on the card can tell those clones apart: set `livekit.identity` on each, or delete the file on the clone.

The daemon resolves the identity once and hands it to each session (a session process gets it in its hello).
Without a state directory (a development run by hand) it falls back to the machine-id derivation, with a warning.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from device.session.tokens import device_identity

log = logging.getLogger("device.daemon.identity")

FILE_NAME = "identity"
PREFIX = "device-"
_VALID = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # ours are device-<12 hex>; a hand-written one is kept


def generate() -> str:
    return PREFIX + secrets.token_hex(6)


def kept_identity(directory: Path | None, *, derived: Callable[[], str] = device_identity,
                  new: Callable[[], str] = generate) -> str:
    """The identity kept in `directory` (made and written there the first time); `derived()` (the machine id's)
    with one warning when there is no directory, or it cannot be read or written: a random identity that is not
    kept would change at every start."""
    if directory is None:
        identity = derived()
        log.warning("no state directory (daemon.state_dir, or systemd's StateDirectory): identity=%s derived from "
                    "the machine id, shared by devices cloned from one image; set daemon.state_dir or "
                    "livekit.identity", identity)
        return identity
    path = directory / FILE_NAME
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    except (OSError, ValueError) as e:
        return _fallback(path, f"not read ({getattr(e, 'strerror', None) or e})", derived)
    if _VALID.fullmatch(kept):
        return kept
    if kept:
        log.warning("device identity file holds no identity path=%s; a new one is made (the token endpoint sees a "
                    "new device)", path)
    identity = new()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _write(path, identity)
    except OSError as e:
        return _fallback(path, f"not written ({e.strerror or e})", derived)
    log.info("device identity made identity=%s path=%s", identity, path)
    return identity


def _fallback(path: Path, what: str, derived: Callable[[], str]) -> str:
    identity = derived()
    log.warning("device identity file %s path=%s; identity=%s derived from the machine id instead (shared by devices "
                "cloned from one image)", what, path, identity)
    return identity


def _write(path: Path, identity: str) -> None:
    """Atomically: a power cut leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(identity + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
