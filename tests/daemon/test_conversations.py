"""What the daemon counts about conversations, and the wake-word service that feeds the device machine."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from device.audio.player import Player
from device.audio.wake.detector import Detection
from device.config.schema import WakeWordConfig
from device.core.vocabulary import (
    AgentStateChanged,
    Event,
    FailureReason,
    SessionEnded,
    SessionFailed,
    SessionReconnected,
    StartSession,
    Trigger,
    WakeWordHeard,
)
from device.daemon.client import format_snapshot
from device.daemon.conversations import ConversationStats, latency
from device.daemon.status import ConversationStatus, DeviceStatus, Latency, WakeStatus, status_json
from device.daemon.wake import WakeService, build_wake


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


def test_conversations_are_counted_by_trigger_with_the_latency_to_the_agent_listening() -> None:
    clock = Clock()
    stats = ConversationStats(clock)
    stats.started(StartSession(1, mark=0, trigger=Trigger.WAKE_WORD, listen_from=100))
    clock.t += 0.3
    stats.observe(AgentStateChanged("initializing", session=1))
    clock.t += 0.2
    stats.observe(AgentStateChanged("listening", session=1))
    clock.t += 5.0
    stats.observe(AgentStateChanged("listening", session=1))  # after an answer: not the first listening
    stats.observe(SessionEnded("follow-up-over", session=1, heard_user=True))
    stats.started(StartSession(2, trigger=Trigger.BUTTON))
    clock.t += 0.1
    stats.observe(AgentStateChanged("listening", session=2))
    stats.started(StartSession(3, trigger=Trigger.COMMAND))
    status = stats.status()
    assert dict(status.started) == {"wake_word": 1, "button": 1, "command": 1}
    assert status.wake_to_listening == Latency(count=1, p50_ms=500, p90_ms=500, max_ms=500, last_ms=500, total=1)
    assert status.press_to_listening.count == 1 and status.press_to_listening.last_ms == 100
    assert status.wake_without_speech == 0


def test_a_wake_word_conversation_nobody_spoke_in_is_counted_as_a_likely_false_wake() -> None:
    stats = ConversationStats(Clock())
    stats.started(StartSession(1, trigger=Trigger.WAKE_WORD))
    stats.observe(SessionEnded("follow-up-over", session=1, heard_user=False))
    stats.started(StartSession(2, trigger=Trigger.BUTTON))  # a press and silence: the user meant it
    stats.observe(SessionEnded("idle-timeout", session=2, heard_user=False))
    stats.started(StartSession(3, trigger=Trigger.WAKE_WORD))
    stats.observe(SessionFailed(FailureReason.AGENT_DID_NOT_JOIN, session=3))  # failed: not a false wake
    stats.observe(SessionEnded("follow-up-over", session=3, heard_user=False))  # (late, stale)
    stats.started(StartSession(4, trigger=Trigger.WAKE_WORD))
    stats.observe(SessionEnded("control", session=4))  # not known: not counted
    assert stats.status().wake_without_speech == 1


def test_latency_is_a_distribution_of_the_recent_values() -> None:
    assert latency([]) == Latency()
    got = latency([100.0, 400.0, 200.0, 300.0, 1000.0])
    assert got == Latency(count=5, p50_ms=300, p90_ms=1000, max_ms=1000, last_ms=1000, total=5)


def test_every_measurement_moves_the_total_even_past_the_values_kept_and_with_equal_values() -> None:
    clock = Clock()
    stats = ConversationStats(clock)
    for n in range(1, 41):  # more presses than the 32 latencies kept, each 250 ms to the agent listening
        stats.started(StartSession(n, trigger=Trigger.BUTTON))
        clock.t += 0.25
        stats.observe(AgentStateChanged("listening", session=n))
        assert stats.status().press_to_listening.total == n
    press = stats.status().press_to_listening
    assert (press.count, press.last_ms, press.total) == (32, 250, 40)
    assert stats.status().wake_to_listening == Latency()


def test_conversations_are_counted_by_how_they_ended_and_the_drops_that_came_back() -> None:
    stats = ConversationStats(Clock())
    stats.started(StartSession(1, trigger=Trigger.WAKE_WORD))
    stats.observe(SessionReconnected(session=1))
    stats.observe(SessionEnded("follow-up-over", session=1, heard_user=True))
    stats.started(StartSession(2, trigger=Trigger.BUTTON))
    stats.observe(SessionFailed(FailureReason.AUTH, retry_in_s=2.0, session=2))  # retried: not over yet
    stats.observe(SessionFailed(FailureReason.AUTH, session=2))  # given up
    stats.started(StartSession(3, trigger=Trigger.BUTTON))
    stats.observe(SessionEnded("button", session=3))  # the device's own end (a long press)
    stats.started(StartSession(4, trigger=Trigger.COMMAND))
    stats.observe(SessionEnded("something-new", session=4))  # a reason nobody declared: bounded as "other"
    stats.observe(SessionEnded("idle-timeout", session=4))  # (late, stale: already counted)
    stats.observe(SessionReconnected(session=9))  # no such conversation
    status = stats.status()
    assert dict(status.ended) == {"follow-up-over": 1, "failed": 1, "button": 1, "other": 1}
    assert status.resumed == 1


def test_the_status_metrics_carry_the_wake_word_figures() -> None:
    status = DeviceStatus(
        wake=WakeStatus(listening=True, models=("okay_nabu",), detections=3, ignored_own_voice=1),
        conversations=ConversationStatus(started={"wake_word": 2, "button": 1}, wake_without_speech=1,
                                         wake_to_listening=Latency(2, 180, 250, 250, 180)))
    m = status.metrics()
    assert m["conversations_wake_word"] == 2 and m["conversations_button"] == 1
    assert m["wake_listening"] is True and m["wake_detections"] == 3 and m["wake_ignored_own_voice"] == 1
    assert m["wake_conversations_without_speech"] == 1
    assert (m["wake_to_listening_ms_p50"], m["wake_to_listening_ms_p90"], m["wake_to_listening_count"]) == (180, 250, 2)
    assert "wake_detections" not in DeviceStatus().metrics()  # a mode without the wake word says nothing of it


def test_voice_device_status_prints_the_wake_word_figures() -> None:
    """What `voice-device status` prints: the daemon's snapshot (JSON over the socket), read back and rendered."""
    status = DeviceStatus(
        wake=WakeStatus(listening=True, models=("okay_nabu",), detections=4),
        conversations=ConversationStatus(started={"wake_word": 3, "button": 1}, wake_without_speech=1,
                                         wake_to_listening=Latency(3, 210, 400, 400, 230)))
    lines = format_snapshot(json.loads(json.dumps(status_json(status)))).splitlines()
    for line in ("wake_detections: 4", "conversations_wake_word: 3", "conversations_button: 1",
                 "wake_conversations_without_speech: 1", "wake_to_listening_ms_p50: 210",
                 "wake_to_listening_ms_p90: 400"):
        assert f"  {line}" in lines


# ---- the service ----------------------------------------------------------------------------------------------


class Ears:
    """The engine as the wake service sees it; its first reader gives `chunks` chunks of silence (none by default),
    then every reader waits for ever (nothing more is said)."""

    sample_rate = 48000

    def __init__(self, chunks: int = 0) -> None:
        self.player = Player(48000, 60, 1.0)
        self.readers = 0
        self.chunks = chunks

    def now_index(self) -> int:
        return 0

    def capture_time(self, index: int) -> float:
        return 0.0

    def reader(self, start_index: int, *, reuse: bool = False, live: bool = True):
        self.readers += 1
        chunks, self.chunks = self.chunks, 0  # the first reader's only

        class Reader:
            def __aiter__(self):
                return self

            async def __anext__(self) -> tuple[int, np.ndarray]:
                nonlocal chunks
                if chunks:
                    chunks -= 1
                    return start_index, np.zeros(4800, np.int16)
                await asyncio.Event().wait()
                raise StopAsyncIteration

            def available(self) -> int:
                return 0

            def close(self) -> None:
                pass

        return Reader()


@pytest.mark.parametrize(("send_wake_phrase", "mark"), [(True, 48000), (False, 96000)])
async def test_a_detection_starts_the_conversation_at_the_phrase_or_after_it(send_wake_phrase: bool,
                                                                             mark: int) -> None:
    events: list[Event] = []
    service = WakeService.build(WakeWordConfig(send_wake_phrase=send_wake_phrase), Ears(), events.append)
    service._heard(Detection("okay_nabu", 0.91234, index=110000, start_index=48000, end_index=96000))
    assert events == [WakeWordHeard("okay_nabu", 0.912, mark=mark, phrase_end=96000)]
    await service.close()


async def test_the_service_listens_only_when_told_and_stops_on_mute() -> None:
    ears = Ears()
    service = WakeService.build(WakeWordConfig(models=("okay_nabu", "alexa")), ears, lambda e: None)
    assert service.status() == WakeStatus(listening=False, models=("okay_nabu", "alexa"))
    service.start()
    await asyncio.sleep(0)
    assert service.status().listening and ears.readers == 1
    await service.set_muted(True)
    assert not service.status().listening
    await service.set_muted(False)
    assert service.status().listening and ears.readers == 2
    await service.close()
    assert not service.status().listening


def test_a_model_that_no_longer_loads_leaves_the_device_without_its_wake_word_and_says_why(tmp_path) -> None:
    broken = tmp_path / "kitchen.json"
    broken.write_text('{"model": "kitchen.tflite", "micro": {"probability_cutoff": 0.9}}')
    service, why = build_wake(WakeWordConfig(models=(str(broken),)), Ears(), lambda e: None)
    assert service is None and why is not None and "the wake word is off" in why and "voice-device check" in why


async def test_a_listener_that_dies_is_shown_down_with_its_reason_until_it_listens_again(caplog) -> None:
    ears = Ears(chunks=1)
    service = WakeService.build(WakeWordConfig(), ears, lambda e: None)

    def broken(first: int, samples: np.ndarray) -> None:
        raise RuntimeError("interpreter failed")

    service.detector.feed = broken  # type: ignore[method-assign]
    delays: list[float] = []
    resume = asyncio.Event()

    async def backoff_sleep(delay: float) -> None:
        delays.append(delay)
        await resume.wait()

    service.listener.backoff_sleep = backoff_sleep
    service.start()
    async with asyncio.timeout(5):
        while not delays:
            await asyncio.sleep(0)
    down = service.status()
    assert (down.listening, down.down, down.failures) == (False, "RuntimeError: interpreter failed", 1)
    lines = format_snapshot(json.loads(json.dumps(status_json(DeviceStatus(wake=down))))).splitlines()
    assert "  wake_down: RuntimeError: interpreter failed" in lines and "  wake_listener_failures: 1" in lines

    resume.set()
    async with asyncio.timeout(5):
        while not service.status().listening:
            await asyncio.sleep(0)
    assert service.status().down is None and ears.readers == 2
    await service.close()
