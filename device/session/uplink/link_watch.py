"""When the server was last heard on the mic's connection: the cut the SDK has not noticed yet.

The SDK notices a dead link when its signal connection breaks — at once when the node it signals through dies,
but only ~10 s later when the room's host dies behind a node that relays the signal (measured: tests/cluster). All
that time the mic's audio goes on into the void. The SFU answers the publisher's connection about once a second
(RTCP receiver reports, STUN), so the publisher transport's received-packet count stops rising the moment the
host is gone. `watch` polls it; `LinkWatch.last_heard` is when it last rose, and the uplink, told so when the SDK
reports `reconnecting`, holds again what it sent live after that moment (uplink.py): re-sent after a full restart,
logged as dropped otherwise — never lost without a word.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from device.session.clock import Clock, sleep

if TYPE_CHECKING:
    from livekit import rtc

log = logging.getLogger("device.session.uplink.link_watch")

WATCH_INTERVAL_S = 0.5  # the SFU's packets come about once a second: half that finds the last within 0.5 s


class StatsRoom(Protocol):
    async def get_rtc_stats(self) -> rtc.RtcStats: ...


class LinkWatch:
    """The last moment (on the session clock) the publisher connection's received-packet count rose."""

    def __init__(self) -> None:
        self.last_heard: float | None = None
        self._received: int | None = None

    def observe(self, now: float, received: int | None) -> None:
        """`received`: the publisher transport's packet count now (None: no transport, e.g. while the SDK
        restarts — nothing heard)."""
        if received is not None and received != self._received:
            self._received = received
            self.last_heard = now


def packets_received(stats: rtc.RtcStats) -> int | None:
    """The publisher transports' received packets, summed; None without a transport."""
    counts = [s.transport.transport.packets_received for s in stats.publisher_stats
              if s.WhichOneof("stats") == "transport"]
    return sum(counts) if counts else None


async def watch(room: StatsRoom, link: LinkWatch, clock: Clock, interval_s: float = WATCH_INTERVAL_S) -> None:
    """Poll the room's stats into `link` until cancelled (the attempt's end); a poll that fails (the room not
    connected, the SDK restarting) hears nothing."""
    while True:
        try:
            received = packets_received(await room.get_rtc_stats())
        except Exception as e:
            log.debug("link watch: no stats (%s)", e)
            received = None
        link.observe(clock.now(), received)
        await sleep(clock, interval_s)
