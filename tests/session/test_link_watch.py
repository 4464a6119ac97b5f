"""The link watch: when the server was last heard on the mic's connection."""

from __future__ import annotations

import asyncio

from livekit import rtc
from livekit.rtc import stats

from device.session.uplink.link_watch import LinkWatch, packets_received, watch
from tests.session.fakes import FakeClock


def transport(n: int) -> stats.RtcStats:
    return stats.RtcStats(transport=stats.RtcStats.Transport(transport=stats.TransportStats(packets_received=n)))


def test_the_last_heard_moment_moves_only_when_the_count_does():
    link = LinkWatch()
    link.observe(1.0, None)
    assert link.last_heard is None
    link.observe(2.0, 5)
    link.observe(3.0, 5)
    link.observe(4.0, None)  # the SDK restarting: no transport
    assert link.last_heard == 2.0
    link.observe(5.0, 0)  # a new connection counts from zero
    assert link.last_heard == 5.0


def test_packets_are_summed_over_the_publisher_transports_only():
    codec = stats.RtcStats(codec=stats.RtcStats.Codec())
    got = rtc.RtcStats(publisher_stats=[transport(3), codec, transport(4)], subscriber_stats=[transport(100)])
    assert packets_received(got) == 7
    assert packets_received(rtc.RtcStats(publisher_stats=[codec], subscriber_stats=[])) is None


async def test_the_watch_polls_on_the_clock_and_a_failing_poll_hears_nothing():
    clock = FakeClock()
    answers: list[int | Exception] = [1, RuntimeError("the room isn't connected"), 1, 2]

    class Room:
        async def get_rtc_stats(self) -> rtc.RtcStats:
            answer = answers.pop(0) if answers else 2
            if isinstance(answer, Exception):
                raise answer
            return rtc.RtcStats(publisher_stats=[transport(answer)], subscriber_stats=[])

    link = LinkWatch()
    task = asyncio.get_running_loop().create_task(watch(Room(), link, clock, interval_s=0.5))
    seen = []
    for _ in range(4):
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen.append(link.last_heard)
        clock.advance(0.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert seen == [0.0, 0.0, 0.0, 1.5]
