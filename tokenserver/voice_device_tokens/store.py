"""The device store: one SQLite file (WAL) that the enrolment commands write and every `serve` instance reads.

A row per device: its group, the salt and hash of its current credential (never the credential), when it was
enrolled, how many credentials it has had, and when it was revoked. Re-enrolling replaces the hash, so the old
credential stops working at once, and lifts a revocation. `serve` reads the row on every request (a primary-key
lookup, microseconds): a revocation or rotation by any process is seen by the next request of every instance.
The file is created 0600; SQLite gives its -wal and -shm files the same mode.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from voice_device_tokens.credential import (
    NAME_RULE,
    Credential,
    Hashed,
    hash_credential,
    new_credential,
    valid_name,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id   TEXT PRIMARY KEY,
    grp         TEXT NOT NULL,
    salt        BLOB NOT NULL,
    digest      BLOB NOT NULL,
    enrolled_at REAL NOT NULL,
    generation  INTEGER NOT NULL,
    revoked_at  REAL
)
"""


class StoreError(Exception):
    """The store cannot be used; `str()` says what to fix."""


@dataclass(frozen=True)
class Device:
    device_id: str
    group: str
    enrolled_at: float
    generation: int  # 1 for the first credential, +1 at each re-enrolment
    revoked_at: float | None
    hashed: Hashed = field(repr=False)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class Store:
    """Thread-safe (one connection behind a lock): `serve` calls it from worker threads."""

    def __init__(self, path: Path, *, wall: Callable[[], float] = time.time):
        self.path = path
        self._wall = wall
        self._lock = threading.Lock()
        try:
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"the device store {path} cannot be opened ({e}); check the path and its "
                             "permissions") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def enrol(self, device_id: str, group: str) -> tuple[Credential, Device]:
        """A new credential for the device (created, or rotated: the old one stops working, a revocation ends)."""
        if not valid_name(group):
            raise ValueError(f"group {group!r} is not valid: use {NAME_RULE}")
        credential = new_credential(device_id)
        hashed = hash_credential(credential)
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO devices VALUES (?, ?, ?, ?, ?, 1, NULL) ON CONFLICT(device_id) DO UPDATE SET "
                "grp=excluded.grp, salt=excluded.salt, digest=excluded.digest, enrolled_at=excluded.enrolled_at, "
                "generation=generation+1, revoked_at=NULL",
                (device_id, group, hashed.salt, hashed.digest, self._wall()),
            )
        device = self.find(device_id)
        assert device is not None
        return credential, device

    def revoke(self, device_id: str) -> Device | None:
        """Revoke the device's credential; None when no such device is enrolled."""
        with self._lock, self._db:
            self._db.execute("UPDATE devices SET revoked_at=? WHERE device_id=? AND revoked_at IS NULL",
                             (self._wall(), device_id))
        return self.find(device_id)

    def find(self, device_id: str) -> Device | None:
        with self._lock:
            row = self._db.execute("SELECT device_id, grp, enrolled_at, generation, revoked_at, salt, digest "
                                   "FROM devices WHERE device_id=?", (device_id,)).fetchone()
        return None if row is None else _device(row)

    def devices(self) -> list[Device]:
        with self._lock:
            rows = self._db.execute("SELECT device_id, grp, enrolled_at, generation, revoked_at, salt, digest "
                                    "FROM devices ORDER BY device_id").fetchall()
        return [_device(row) for row in rows]

    def readable(self) -> bool:
        """Whether the store answers a query (the load balancer's health check)."""
        try:
            with self._lock:
                self._db.execute("SELECT 1 FROM devices LIMIT 1").fetchall()
        except sqlite3.Error:
            return False
        return True


def _device(row: tuple[str, str, float, int, float | None, bytes, bytes]) -> Device:
    device_id, group, enrolled_at, generation, revoked_at, salt, digest = row
    return Device(device_id, group, enrolled_at, generation, revoked_at, Hashed(bytes(salt), bytes(digest)))
