"""Logging: one line per event with key=value fields on stderr (journald keeps it), secrets redacted.

Call sites log `log.info("session started room=%s agent=%s", room, agent)`: the message is the event and its
fields. The redaction filter replaces any registered secret and anything shaped like a JWT, so a token can
never reach the journal even by mistake.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from typing import TextIO

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
MIN_SECRET_LEN = 8  # shorter "secrets" are development placeholders (livekit-server --dev uses "secret")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class RedactFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets.update(s for s in secrets if s and len(s) >= MIN_SECRET_LEN)

    def redact(self, text: str) -> str:
        text = _JWT.sub("<token>", text)
        for s in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(s, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


class KVFormatter(logging.Formatter):
    """`2026-11-22T03:10:00 info session.supervisor: session started room=r1`; no timestamp under journald."""

    def __init__(self, timestamps: bool):
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s" if timestamps else "%(levelname)s %(name)s: %(message)s"
        super().__init__(fmt, datefmt="%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        record.levelname = record.levelname.lower()
        return super().format(record)


class _Handler(logging.StreamHandler[TextIO]):
    """Ours: a second setup_logging replaces it instead of adding another."""


_stderr: TextIO | None = None


def stderr_stream() -> TextIO:
    """Where log lines go: a line-buffered stream on a duplicate of fd 2, made once. `quiet_stderr()` (audio)
    points fd 2 itself at /dev/null while PortAudio probes devices, on the audio thread; lines logged meanwhile by
    the event loop must still reach the journal, and they did not when the handler wrote to fd 2. Where sys.stderr
    is not fd 2 (a test's capture), sys.stderr."""
    global _stderr
    try:
        real = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        real = False
    if not real:
        return sys.stderr
    if _stderr is None:
        try:
            fd = os.dup(2)
        except OSError:  # no descriptor to spare: log to fd 2 itself, as before
            return sys.stderr
        _stderr = open(fd, "w", buffering=1, encoding=sys.stderr.encoding,  # noqa: SIM115 (for ever)
                       errors="backslashreplace")
    return _stderr


_filter = RedactFilter()


def setup_logging(level: str = "info", verbosity: int = 0, secrets: Iterable[str] = ()) -> RedactFilter:
    """Configure the root logger once; `verbosity` is -v count minus -q count."""
    base = _LEVELS.get(level, logging.INFO)
    effective = max(logging.DEBUG, min(logging.CRITICAL, base - 10 * verbosity))
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _Handler):
            root.removeHandler(h)
    handler = _Handler(stderr_stream())
    handler.setFormatter(KVFormatter(timestamps="JOURNAL_STREAM" not in os.environ))
    handler.addFilter(_filter)
    root.addHandler(handler)
    root.setLevel(effective)
    # The SDK's native core logs every signalling step at info; keep its warnings unless asked for more.
    logging.getLogger("livekit").setLevel(logging.DEBUG if verbosity > 1 else max(effective, logging.WARNING))
    _filter.add(secrets)
    return _filter


def redactor() -> RedactFilter:
    return _filter
