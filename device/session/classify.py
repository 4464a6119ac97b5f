"""Failure classification: SDK errors and disconnect reasons → a typed `FailureReason` (or a normal end).

Pure functions on strings (the SDK's `ConnectError` text, `rtc.DisconnectReason` names) so the table is
testable without livekit and readable as a table.
"""

from __future__ import annotations

import re

from device.core.vocabulary import EndReason, FailureReason

_AUTH = re.compile(r"\b(401|403)\b|unauthori[sz]ed|forbidden|invalid token|token is expired", re.IGNORECASE)

# Disconnect reasons that end a session normally: the room went away (agents delete it when they finish).
ENDED_REASONS = {
    "CLIENT_INITIATED": EndReason.REQUESTED,
    "ROOM_DELETED": EndReason.ROOM_CLOSED,
    "ROOM_CLOSED": EndReason.ROOM_CLOSED,
}

DISCONNECT_FAILURES = {
    "SERVER_SHUTDOWN": FailureReason.SERVER_SHUTDOWN,
    "PARTICIPANT_REMOVED": FailureReason.PARTICIPANT_REMOVED,
    "DUPLICATE_IDENTITY": FailureReason.DUPLICATE_IDENTITY,
    # the SDK gave up resuming/restarting (a 401/403 during reconnect also ends here): a fresh token and room follow
    "JOIN_FAILURE": FailureReason.CONNECTION_LOST,
    "SIGNAL_CLOSE": FailureReason.CONNECTION_LOST,
    "CONNECTION_TIMEOUT": FailureReason.CONNECTION_LOST,
    "MEDIA_FAILURE": FailureReason.CONNECTION_LOST,
    "STATE_MISMATCH": FailureReason.CONNECTION_LOST,
    "MIGRATION": FailureReason.CONNECTION_LOST,
    "UNKNOWN_REASON": FailureReason.CONNECTION_LOST,
}

# Retried with backoff (always_on retries everything). The rest need a person: a wrong key, an admin who
# removed the device, a second device with the same identity, an agent that will not come.
RETRYABLE = frozenset({
    FailureReason.UNREACHABLE,
    FailureReason.TOKEN_ENDPOINT,
    FailureReason.SERVER_SHUTDOWN,
    FailureReason.CONNECTION_LOST,
})


def classify_connect_error(message: str) -> FailureReason:
    """`rtc.ConnectError` text → AUTH for a refused token, else UNREACHABLE (refused, DNS, timeouts, TLS)."""
    return FailureReason.AUTH if _AUTH.search(message or "") else FailureReason.UNREACHABLE


def classify_disconnect(reason_name: str) -> tuple[EndReason | None, FailureReason | None]:
    """(end reason, None) for a normal end, (None, failure) otherwise."""
    if reason_name in ENDED_REASONS:
        return ENDED_REASONS[reason_name], None
    return None, DISCONNECT_FAILURES.get(reason_name, FailureReason.CONNECTION_LOST)
