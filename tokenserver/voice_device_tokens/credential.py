"""A device's credential: its shape, how one is made, and the hash the store keeps instead of it (pure).

A credential reads `vdc1.<device id>.<secret>`: the device id says which row to check (the server never searches
by secret), the secret is 32 random bytes (base64url, 43 characters). The store keeps a random 16-byte salt and
SHA-256(salt ‖ device id ‖ secret), compared in constant time.

Why salted SHA-256 and not scrypt/PBKDF2: a slow hash protects guessable secrets (passwords) against offline
guessing; these secrets are 256 random bits, which no guessing reaches, fast hash or slow. A slow hash would cost
every token request tens of milliseconds of CPU and give anyone who can reach the endpoint a cheap way to burn it.
The salt keeps two stores (or two rotations) from ever holding the same hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

SCHEME = "vdc1"
SECRET_BYTES = 32
SALT_BYTES = 16
NAME_RULE = "1 to 64 characters: letters, digits, '-' and '_', starting with a letter or digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")


def valid_name(name: str) -> bool:
    """A device id or group name: safe in a room name, a log line, an env file and a credential."""
    return _NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class Credential:
    device_id: str
    secret: str

    def __repr__(self) -> str:  # never the secret, whatever prints it
        return f"Credential(device_id={self.device_id!r})"

    def text(self) -> str:
        return f"{SCHEME}.{self.device_id}.{self.secret}"


@dataclass(frozen=True)
class Hashed:
    """What the store keeps of a credential."""

    salt: bytes
    digest: bytes

    def __repr__(self) -> str:
        return "Hashed(...)"


def new_credential(device_id: str) -> Credential:
    if not valid_name(device_id):
        raise ValueError(f"device id {device_id!r} is not valid: use {NAME_RULE}")
    return Credential(device_id, secrets.token_urlsafe(SECRET_BYTES))


def parse(text: str) -> Credential | None:
    """The credential a request carries, or None when it does not have a credential's shape."""
    parts = text.split(".")
    if len(parts) != 3 or parts[0] != SCHEME or not valid_name(parts[1]) or _SECRET.fullmatch(parts[2]) is None:
        return None
    return Credential(parts[1], parts[2])


def _digest(salt: bytes, credential: Credential) -> bytes:
    return hashlib.sha256(salt + credential.device_id.encode() + b"\0" + credential.secret.encode()).digest()


def hash_credential(credential: Credential) -> Hashed:
    salt = secrets.token_bytes(SALT_BYTES)
    return Hashed(salt, _digest(salt, credential))


# Checked against when the device id is unknown, so that an unknown id costs the same as a wrong secret.
_NOBODY = Hashed(bytes(SALT_BYTES), bytes(32))


def matches(credential: Credential, kept: Hashed | None) -> bool:
    """Whether the credential is the one whose hash was kept; constant time in the secret."""
    against = kept or _NOBODY
    return hmac.compare_digest(_digest(against.salt, credential), against.digest) and kept is not None
