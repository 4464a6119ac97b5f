"""The supervisor's default adapters with the REAL livekit SDK, offline: a connect to a closed loopback port
must become one typed failure (the SDK's ConnectError text classified), with nothing left running."""

from __future__ import annotations

import asyncio
import socket

from device.config.schema import BackoffConfig, Config, LiveKitConfig, SessionConfig
from device.core.vocabulary import FailureReason, SessionFailed
from device.session.supervisor import Supervisor
from tests.session.fakes import FakeAudioPort, fake_jwt


async def test_a_refused_connect_with_the_real_sdk_is_an_unreachable_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = Config(
        livekit=LiveKitConfig(token_source="literal", url=f"ws://127.0.0.1:{port}",
                              token=fake_jwt(1, 4_000_000_000, sub="dev", video={"roomJoin": True, "room": "r"})),
        session=SessionConfig(connect_timeout_s=5.0, backoff=BackoffConfig(attempts=1)),
    )
    events: list = []
    failed = asyncio.Event()

    def emit(e):
        events.append(e)
        if isinstance(e, SessionFailed):
            failed.set()

    sup = Supervisor(cfg, FakeAudioPort(), emit)  # real rtc.Room, real clock, real media
    try:
        await sup.start(0)
        await asyncio.wait_for(failed.wait(), 10)
    finally:
        await asyncio.wait_for(sup.aclose(), 10)
    (f,) = [e for e in events if isinstance(e, SessionFailed)]
    assert f.reason is FailureReason.UNREACHABLE and f.retry_in_s is None, f
    assert sup.status().phase == "idle"
