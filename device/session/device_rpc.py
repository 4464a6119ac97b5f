"""RPC methods the agent may call on the device (beyond the official SDKs): `device.set_volume`
(payload `{"volume": 0..1}`), `device.end_session`, `device.get_status`. Handlers never await the session's
own teardown: `room.disconnect()` drains running RPC handlers, so ending from inside one would deadlock.

Only the session's agent commands the device (`may_command` says who that is): anyone else in the room gets
PERMISSION_DENIED, and the refusal is logged with the method and the caller, never the payload."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from device.core.agent_contract import DeviceMethod, RpcErrorCode
from device.core.codec import to_json
from device.session.status import SessionStatus

if TYPE_CHECKING:
    from livekit import rtc

    Handler = Callable[[rtc.RpcInvocationData], str]

log = logging.getLogger("device.session.device_rpc")

# the names and codes of the agent protocol (PROTOCOL.md), declared in core/agent_contract.py
SET_VOLUME, END_SESSION, GET_STATUS = (DeviceMethod.SET_VOLUME.value, DeviceMethod.END_SESSION.value,
                                       DeviceMethod.GET_STATUS.value)
INVALID_ARGUMENT = int(RpcErrorCode.INVALID_ARGUMENT)
PERMISSION_DENIED = int(RpcErrorCode.PERMISSION_DENIED)


def register(
    local_participant: rtc.LocalParticipant,
    *,
    may_command: Callable[[str], bool],
    set_volume: Callable[[float], float],
    request_end: Callable[[str], None],
    get_status: Callable[[], SessionStatus],
) -> None:
    from livekit import rtc

    def on_set_volume(data: rtc.RpcInvocationData) -> str:
        try:
            volume = json.loads(data.payload or "{}")["volume"]
            if isinstance(volume, bool) or not isinstance(volume, (int, float)) or not 0.0 <= volume <= 1.0:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise rtc.RpcError(INVALID_ARGUMENT, 'payload must be {"volume": <number 0..1>}') from None
        applied = set_volume(float(volume))
        log.info("agent set volume caller=%s volume=%.2f", data.caller_identity, applied)
        return json.dumps({"volume": applied})

    def on_end_session(data: rtc.RpcInvocationData) -> str:
        log.info("agent ended the session caller=%s", data.caller_identity)
        request_end("agent-ended")
        return json.dumps({"ok": True})

    def on_get_status(data: rtc.RpcInvocationData) -> str:
        return json.dumps(to_json(get_status()), default=str)

    def guarded(method: str, handler: Handler) -> Handler:
        def serve(data: rtc.RpcInvocationData) -> str:
            if not may_command(data.caller_identity):
                log.warning("device RPC refused method=%s caller=%s: only the session's agent may command the device",
                            method, data.caller_identity)
                raise rtc.RpcError(PERMISSION_DENIED, "only the agent of this session may call device methods")
            return handler(data)

        return serve

    for method, handler in ((SET_VOLUME, on_set_volume), (END_SESSION, on_end_session), (GET_STATUS, on_get_status)):
        local_participant.register_rpc_method(method, guarded(method, handler))
