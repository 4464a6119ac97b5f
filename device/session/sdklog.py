"""Keeps a failed connect to one log line: the SDK's own reports of it are demoted to debug.

livekit's native core reports one refused or failed connect several times through the `livekit` logger (the
signalling warning, the engine warning, the FFI error), each with the same text the supervisor already logs once,
classified, as `session failed reason=... detail=...`. Those records are shown only when the `livekit` logger is
enabled for debug (`-vv`); every other SDK record is left alone.
"""

from __future__ import annotations

import logging

# Substrings of the SDK's connect-failure records (livekit 1.2.x).
CONNECT_FAILURE_TEXTS = (
    "signal connection failed",
    "authentication rejected during connect",
    "error while connecting to a room",
)


class ConnectFailureFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if not any(text in message for text in CONNECT_FAILURE_TEXTS):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def install() -> None:
    """Attach the filter to the `livekit` logger once."""
    logger = logging.getLogger("livekit")
    if not any(isinstance(f, ConnectFailureFilter) for f in logger.filters):
        logger.addFilter(ConnectFailureFilter())
