"""Supervisors for `device.session.process.host` children in tests: the real Supervisor, fake room/media/tokens.

`RemoteSupervisor(..., factory="tests.session.hostfactory:scripted")` makes each child build one of these. The
room has an agent already present and listening; once the mic is published the agent speaks (three frames of
a known pattern) and subscribes to the mic. What the child saw is reported as log lines (the child forwards its
log records to the test process): `fake: captured first=... n=... exact=...` when the session ends.
`VD_FAKE_CRASH` names a file: while it exists, a connect deletes it and the child exits with code 7;
`VD_FAKE_HANG` likewise blocks the child's loop for an hour.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

import numpy as np
from livekit import rtc

from device.session.supervisor import Supervisor
from tests.session.fakes import (
    ACTIVE,
    AGENT,
    FakeMedia,
    FakeRemoteParticipant,
    FakeRoom,
    FakeTokens,
    pattern,
)

log = logging.getLogger("tests.fake")

SPEECH = [pattern(100_000 + 160 * i, 160) for i in range(3)]


class ScriptedRoom(FakeRoom):
    def __init__(self, media: FakeMedia) -> None:
        agent = FakeRemoteParticipant("agent-1", kind=AGENT, state=ACTIVE,
                                      attributes={"lk.agent.name": "test-agent", "lk.agent.state": "listening"})
        super().__init__(present=[agent])
        self.media = media
        self.agent = agent

    async def connect(self, url: str, token: str, options: rtc.RoomOptions | None = None) -> None:
        hang = os.environ.get("VD_FAKE_HANG")
        if hang and os.path.exists(hang):
            os.unlink(hang)
            log.warning("fake: blocking the loop on connect")
            await asyncio.sleep(0.2)
            time.sleep(3600)  # a native deadlock, as the daemon sees it
        crash = os.environ.get("VD_FAKE_CRASH")
        if crash and os.path.exists(crash):
            os.unlink(crash)
            log.warning("fake: crashing on connect")
            logging.shutdown()
            await asyncio.sleep(0.2)  # let the log record reach the daemon
            os._exit(7)
        await super().connect(url, token, options)
        self._task = asyncio.get_running_loop().create_task(self._script())

    async def _script(self) -> None:
        await asyncio.sleep(0.2)
        self.agent_subscribes_mic()
        self.publish_agent_audio(self.agent)
        while not self.media.streams:
            await asyncio.sleep(0.01)
        for samples in SPEECH:
            self.media.streams[-1].queue.put_nowait(rtc.AudioFrame(samples.tobytes(), 16000, 1, len(samples)))

    async def disconnect(self, *, reason: int = rtc.DisconnectReason.CLIENT_INITIATED) -> None:
        if self.connected:
            streamed = [w.samples() for w in self.local_participant.writers]
            live = self.media.sources[-1].samples() if self.media.sources else np.zeros(0, np.int16)
            sent = np.concatenate([*streamed, live])
            first = (int(sent[0]) - 8000) % 16000 if len(sent) else -1
            exact = bool(len(sent)) and np.array_equal(sent, pattern(first, len(sent)))
            muted = bool(self.local_participant.track_publications) and self.mic.track.muted
            log.info("fake: sent first=%d n=%d exact=%s muted=%s", first, len(sent), exact, muted)
        await super().disconnect(reason=reason)


def scripted(config: Any, audio: Any, emit: Any, **kwargs: Any) -> Supervisor:
    log.info("fake: built with modules %s", ",".join(m for m in ("livekit.api", "aiohttp") if m in sys.modules))
    media = FakeMedia()
    return Supervisor(config, audio, emit, room_factory=lambda: ScriptedRoom(media), token_source=FakeTokens(),
                      media=media, **kwargs)
