"""The supervisor against a fake Room at the livekit.rtc API: lifecycle, agent tracking, pre-connect audio and
its seam with the live track, reconnects, failures, turns, text and agent-driven device control."""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
import pytest
from livekit import rtc

from device.config.schema import BackoffConfig
from device.core.vocabulary import (
    AgentStateChanged,
    FailureReason,
    SessionBuffering,
    SessionConnecting,
    SessionEnded,
    SessionFailed,
    SessionReconnected,
    SessionReconnecting,
)
from device.session.status import AgentStatus, TranscriptLine, TurnsStatus
from device.session.supervisor import SessionError
from device.session.uplink.uplink import TOPIC
from device.session.uplink.user_speech import VAD_RELEASE_S, EnergyGate, VadGate
from tests.session.conftest import make_config
from tests.session.fakes import (
    ACTIVE,
    AGENT,
    FakePublication,
    FakeRemoteParticipant,
    FakeTextReader,
    FakeTokens,
    pattern,
)

RATE = 16000


def ms(n: int) -> int:
    return RATE * n // 1000


# ---- lifecycle and agent state ----------------------------------------------------------------------------------


async def test_join_then_initializing_then_listening_drives_the_device_state(make_rig):
    rig = make_rig()
    await rig.start()
    assert [type(e) for e in rig.events] == [SessionConnecting, SessionBuffering]
    opts = rig.room.local_participant.publish_options[0]
    assert opts.source == rtc.TrackSource.SOURCE_MICROPHONE and opts.preconnect_buffer
    assert isinstance(rig.room.options, rtc.RoomOptions) and rig.room.options.connect_timeout

    agent = rig.room.agent_joins(state="initializing")
    await rig.settle()
    rig.room.set_agent_state(agent, "listening")
    await rig.settle()

    assert [e.state for e in rig.of(AgentStateChanged)] == ["initializing", "listening"]
    assert rig.sup.status().agent == AgentStatus("agent-1", "listening")


async def test_agent_already_in_the_room_at_connect_is_recognised_without_an_event(make_rig):
    present = FakeRemoteParticipant("agent-7", kind=AGENT, state=ACTIVE,
                                    attributes={"lk.agent.name": "test-agent", "lk.agent.state": "listening"})
    rig = make_rig(present=[present])
    rig.audio.speak(300)
    await rig.start(preroll_ms=300)
    assert [e.state for e in rig.of(AgentStateChanged)] == ["listening"]
    writer = rig.room.local_participant.writers[0]
    assert writer.destination_identities == ["agent-7"]


async def test_avatar_publishing_on_behalf_of_the_agent_is_not_taken_for_the_agent_but_its_audio_plays(make_rig):
    rig = make_rig()
    await rig.start()
    avatar = rig.room.agent_joins("avatar-1", attributes={"lk.publish_on_behalf": "agent-1"})
    await rig.settle()
    assert rig.sup.status().agent.identity is None
    rig.room.agent_joins("agent-1", state="listening")
    await rig.settle()
    assert rig.sup.status().agent.identity == "agent-1"

    rig.room.publish_agent_audio(avatar)
    await rig.settle()
    frame = rtc.AudioFrame(np.full(160, 1000, np.int16).tobytes(), RATE, 1, 160)
    rig.media.streams[0].queue.put_nowait(frame)
    await rig.settle()
    assert rig.audio.player.frames == [frame]


async def test_the_agents_silence_between_replies_is_not_played_and_its_end_is_told(make_rig):
    rig = make_rig()
    await rig.start()
    agent = rig.room.agent_joins(state="listening")
    await rig.settle()
    rig.room.publish_agent_audio(agent)
    await rig.settle()
    assert rig.media.frame_ms == 40  # batched natively: one event per 40 ms

    def frame(level: int) -> rtc.AudioFrame:
        return rtc.AudioFrame(np.full(640, level, np.int16).tobytes(), RATE, 1, 640)

    stream = rig.media.streams[0].queue
    for level in [0] * 5 + [3000] * 3 + [0] * 20 + [-2000] + [0] * 3:  # silence, a reply, 0.8 s quiet, a word
        stream.put_nowait(frame(level))
    await rig.settle()
    played = [int(np.frombuffer(bytes(f.data), np.int16)[0]) for f in rig.audio.player.frames]
    # the reply and its first 0.5 s of quiet (pauses between words are played), then nothing until the next word
    assert played == [3000] * 3 + [0] * 12 + [-2000] + [0] * 3
    assert rig.audio.player.ends == 1  # told once, when the quiet after the reply began to be dropped


async def test_a_second_start_while_a_session_runs_is_ignored(make_rig):
    rig = make_rig()
    await rig.start()
    await rig.start()
    assert len(rig.rooms.made) == 1
    assert rig.sup.status().metrics.sessions == 1


async def test_each_session_gets_a_fresh_room_and_a_fresh_token(make_rig):
    rig = make_rig()
    await rig.start()
    await rig.sup.end()
    await rig.settle()
    await rig.start()
    first, second = rig.tokens.requests
    assert first.room_name != second.room_name
    assert first.room_name.startswith("voice-device-") and first.participant_identity == "device-test"
    assert first.agent_name == "test-agent"


async def test_the_status_and_log_name_the_room_and_identity_the_token_gave_not_those_asked_for(make_rig, caplog):
    """A fleet's token endpoint fixes the room and identity from the device's credential, whatever it asked."""
    rig = make_rig()
    await rig.start()
    rig.room.name, rig.room.local_participant.identity = "kiosk-7.5f1c", "kiosk-7"
    status = rig.sup.status()
    assert (status.room, status.identity) == ("kiosk-7.5f1c", "kiosk-7")
    assert rig.tokens.requests[0].room_name != "kiosk-7.5f1c"
    with caplog.at_level("INFO", logger="device.session.attempt"):
        await rig.sup.end()
        await rig.settle()
    assert "session torn down room=kiosk-7.5f1c" in caplog.text


# ---- pre-connect audio ------------------------------------------------------------------------------------------


async def test_preconnect_stream_carries_speech_from_the_mark_and_live_continues_at_the_very_next_sample(make_rig):
    rig = make_rig()
    rig.audio.speak(300)  # before the press: 200 ms of it is pre-roll
    mark = await rig.start(preroll_ms=200)
    rig.audio.speak(400)  # while connecting, before any agent
    await rig.settle()
    assert rig.room.local_participant.writers == []  # no agent yet: nothing is sent

    rig.room.agent_joins(state="initializing")
    await rig.settle()
    writer = rig.room.local_participant.writers[0]
    assert writer.topic == TOPIC
    assert writer.mime_type == "application/octet-stream"
    assert writer.destination_identities == ["agent-1"]
    assert writer.attributes == {"sampleRate": "16000", "channels": "1", "trackId": rig.room.mic.sid}
    assert rig.room.mic.sid.startswith("TR_")

    rig.audio.speak(260)  # the agent has not subscribed yet: the stream keeps growing
    await rig.settle()
    assert not writer.closed

    rig.room.agent_subscribes_mic()
    await rig.settle()
    assert writer.closed
    rig.audio.speak(400)
    await rig.settle()

    sent = writer.samples()
    live = rig.media.sources[0].samples()
    # the stream holds exactly the ring from the mark on; the live track starts at the next index
    np.testing.assert_array_equal(sent, pattern(mark, len(sent)))
    np.testing.assert_array_equal(live, pattern(mark + len(sent), len(live)))
    uplink = rig.sup._uplink
    assert uplink.streams[0].first == mark and uplink.live_starts == [uplink.streams[0].end]
    assert len(sent) + len(live) == rig.audio.produced - mark  # nothing lost, nothing twice
    assert uplink.gaps == 0
    assert rig.sup.status().metrics.preconnect_bytes_sent == 2 * len(sent)


async def test_live_audio_is_batched_into_few_capture_calls(make_rig):
    rig = make_rig(preconnect=False)
    await rig.start()
    rig.audio.speak(400)  # twenty 20 ms chunks
    await rig.settle()
    frames = rig.media.sources[0].frames
    assert sum(f.samples_per_channel for f in frames) == ms(400)
    assert len(frames) <= 10


async def test_stream_is_closed_after_two_and_a_half_seconds_even_without_a_subscription(make_rig):
    rig = make_rig()
    mark = await rig.start()
    rig.room.agent_joins(state="initializing")
    await rig.settle()
    writer = rig.room.local_participant.writers[0]
    for _ in range(24):
        rig.audio.speak(100)
        await rig.run_for(0.1)
    assert not writer.closed
    await rig.run_for(0.2)
    assert writer.closed  # before the agent's 3 s limit
    rig.audio.speak(100)
    await rig.settle()
    sent, live = writer.samples(), rig.media.sources[0].samples()
    assert rig.sup._uplink.streams[0].closed == "deadline"
    np.testing.assert_array_equal(np.concatenate([sent, live]), pattern(mark, len(sent) + len(live)))


async def test_preconnect_disabled_publishes_without_the_flag_and_sends_no_buffer(make_rig):
    rig = make_rig(preconnect=False)
    await rig.start()
    rig.room.agent_joins(state="listening")
    await rig.settle()
    assert not rig.room.local_participant.publish_options[0].preconnect_buffer
    assert rig.room.local_participant.writers == []


async def test_buffer_is_capped_at_preconnect_max_s_keeping_the_newest_audio(make_rig):
    rig = make_rig(preconnect_max_s=0.5)
    await rig.start()
    rig.audio.speak(900)
    await rig.settle()
    rig.room.agent_joins()
    await rig.settle()
    sent = rig.room.local_participant.writers[0].samples()
    assert len(sent) == ms(500)
    np.testing.assert_array_equal(sent, pattern(ms(400), ms(500)))


@pytest.mark.parametrize("mode", ["push_to_talk", "always_on"])
async def test_an_agent_dispatched_by_the_token_server_is_waited_for_no_longer_than_with_agent_name(make_rig, mode):
    # no agent_name: the token server dispatches (or not); the device still gives up on an agent that never comes
    rig = make_rig(config=make_config(agent_name=None, mode=mode, agent_connect_timeout_s=5.0))
    await rig.start()
    rig.audio.speak(300)
    await rig.run_for(4.9)
    assert not rig.of(SessionFailed) and rig.sup.status().phase == "connected"
    await rig.run_for(0.2)
    failed = rig.of(SessionFailed)[0]
    assert failed.reason is FailureReason.AGENT_DID_NOT_JOIN and failed.detail == "after 5 s"
    assert failed.reason.message == "Agent did not join the room."
    assert (failed.retry_in_s is not None) == (mode == "always_on")  # always_on keeps trying; the failure shows


async def test_agent_never_joins_fails_with_the_sdk_sentence_and_tears_down(make_rig):
    rig = make_rig(agent_connect_timeout_s=20.0)
    await rig.start()
    await rig.run_for(19.9)
    assert not rig.of(SessionFailed)
    await rig.run_for(0.2)
    (failed,) = rig.of(SessionFailed)
    assert failed.reason is FailureReason.AGENT_DID_NOT_JOIN and failed.retry_in_s is None
    assert failed.reason.message == "Agent did not join the room."
    assert rig.media.sources[0].closed and not rig.room.connected
    assert rig.sup.status().phase == "idle"


async def test_agent_that_joins_but_never_initializes_fails_with_the_second_sentence(make_rig):
    rig = make_rig(agent_connect_timeout_s=10.0)
    await rig.start()
    rig.room.agent_joins(state="initializing")
    await rig.run_for(10.1)
    (failed,) = rig.of(SessionFailed)
    assert failed.reason.message == "Agent joined the room but did not complete initializing."


async def test_agent_leaving_unexpectedly_fails_the_session(make_rig):
    rig = make_rig()
    await rig.start()
    agent = rig.room.agent_joins(state="listening")
    await rig.settle()
    rig.room.participant_leaves(agent)
    await rig.run_for(2.1)
    (failed,) = rig.of(SessionFailed)
    assert failed.reason.message == "Agent left the room unexpectedly."


async def test_agent_leaving_on_purpose_ends_the_session_normally(make_rig):
    rig = make_rig()
    await rig.start()
    agent = rig.room.agent_joins(state="listening")
    await rig.settle()
    rig.room.participant_leaves(agent, rtc.DisconnectReason.CLIENT_INITIATED)
    await rig.run_for(2.1)
    assert not rig.of(SessionFailed)
    assert rig.of(SessionEnded)[-1].reason == "agent-ended"


# ---- reconnects -------------------------------------------------------------------------------------------------


async def _live_session(rig):
    mark = await rig.start()
    agent = rig.room.agent_joins(state="listening")
    await rig.settle()
    rig.room.agent_subscribes_mic()
    rig.audio.speak(200)
    await rig.settle()
    return mark, agent


async def test_full_reconnect_resends_speech_captured_while_disconnected_with_the_new_sid(make_rig):
    rig = make_rig(resend_after_reconnect_s=5.0)
    await _live_session(rig)
    old_sid = rig.room.mic.sid
    source = rig.media.sources[0]
    live_before = len(source.samples())

    # rust-sdks order: participants reported gone, then reconnecting ... republish, participants back, reconnected
    agent = rig.room.remote_participants["agent-1"]
    rig.room.participant_leaves(agent)
    rig.room.emit("reconnecting")
    await rig.settle()
    gap_start = rig.audio.produced
    rig.audio.speak(300)  # said while the connection was down
    await rig.settle()
    old = rig.room.mic
    lp = rig.room.local_participant
    del lp.track_publications[old.sid]
    new = FakePublication(old.track, old.source)
    lp.track_publications[new.sid] = new
    rig.room.remote_participants[agent.identity] = agent
    rig.room.emit("participant_connected", agent)
    rig.room.emit("local_track_republished", new, old.sid)
    rig.room.emit("reconnected")
    await rig.settle()

    kinds = [type(e) for e in rig.events if isinstance(e, (SessionReconnecting, SessionReconnected))]
    assert kinds == [SessionReconnecting, SessionReconnected]
    assert not rig.of(SessionFailed)
    writer = lp.writers[-1]
    assert len(lp.writers) == 2
    assert writer.attributes["trackId"] == new.sid != old_sid
    np.testing.assert_array_equal(writer.samples()[: ms(300)], pattern(gap_start, ms(300)))

    rig.room.agent_subscribes_mic()
    await rig.settle()
    rig.audio.speak(100)
    await rig.settle()
    uplink = rig.sup._uplink
    assert writer.closed and uplink.live_starts[-1] == uplink.streams[-1].end
    after = source.samples()[live_before:]
    np.testing.assert_array_equal(after, pattern(uplink.streams[-1].end, len(after)))
    assert rig.sup.status().metrics.reconnects == 1


async def test_audio_sent_live_after_the_server_was_last_heard_is_held_again_and_resent_after_a_restart(
        make_rig, caplog):
    """The room's host died behind the node the device signals through: the SDK reports `reconnecting` ~10 s
    later, and until then the mic went live into the void. What was sent after the server was last heard on the
    mic's connection (its packet count stopped rising) goes to the agent again, before what was held after."""
    rig = make_rig(resend_after_reconnect_s=5.0)
    await _live_session(rig)
    rig.room.packets_received = 10
    await rig.run_for(1.0)  # the link watch sees the count (polled every 0.5 s)
    rig.room.packets_received = 12  # the last packet the server sends
    await rig.run_for(1.0)
    unheard_start = rig.audio.produced
    rig.audio.speak(600)  # sent live, into the void
    await rig.settle()
    with caplog.at_level(logging.INFO, logger="device.session"):
        rig.room.emit("reconnecting")
        await rig.settle()
        rig.audio.speak(300)  # held while reconnecting
        await rig.settle()
        rig.room.full_restart()
        await rig.settle()
    sent = rig.room.local_participant.writers[-1].samples()
    np.testing.assert_array_equal(sent[: ms(900)], pattern(unheard_start, ms(900)))
    assert "audio sent live since the server was last heard held again ms=600" in caplog.text


async def test_audio_sent_into_a_dead_link_beyond_the_resend_bound_is_counted_and_logged_as_dropped(make_rig, caplog):
    rig = make_rig(resend_after_reconnect_s=0.5)
    await _live_session(rig)
    rig.room.packets_received = 10
    await rig.run_for(1.0)
    dropped_before = rig.sup.status().preconnect.dropped_ms
    unheard_start = rig.audio.produced
    for _ in range(10):  # 1.2 s into the void, the clock moving
        rig.audio.speak(120)
        await rig.run_for(0.1)
    with caplog.at_level(logging.INFO, logger="device.session"):
        rig.room.emit("reconnecting")
        await rig.settle()
        rig.room.full_restart()
        await rig.settle()
    sent = rig.room.local_participant.writers[-1].samples()
    lost = rig.sup.status().preconnect.dropped_ms - dropped_before
    assert ms(400) <= len(sent) <= ms(500)  # the newest of it, within the bound
    np.testing.assert_array_equal(sent, pattern(unheard_start + ms(1200) - len(sent), len(sent)))
    assert "audio sent into a dead link dropped" in caplog.text
    assert ms(1200) - ms(40) <= ms(lost) + len(sent) <= ms(1200) + ms(40)


async def test_a_mute_forgets_what_was_sent_live_before_it_so_no_reconnect_sends_it_again(make_rig):
    """Mute means mute: audio sent live before the mute, into a link that was already dead, is not held again when
    the SDK then reconnects — nothing leaves the device while it is muted."""
    rig = make_rig(resend_after_reconnect_s=5.0)
    await _live_session(rig)
    rig.room.packets_received = 10
    await rig.run_for(1.0)
    rig.audio.speak(600)  # sent live after the server was last heard
    await rig.settle()
    await rig.sup.set_muted(True)
    await rig.settle()
    rig.room.emit("reconnecting")
    await rig.settle()
    rig.room.full_restart()
    await rig.run_for(1.0)
    writers = rig.room.local_participant.writers
    assert all(len(w.samples()) == 0 for w in writers[1:]), "audio from before the mute was sent while muted"


async def test_a_link_still_heard_when_the_sdk_reconnects_holds_nothing_again(make_rig):
    rig = make_rig(resend_after_reconnect_s=5.0)
    await _live_session(rig)
    rig.room.packets_received = 10
    await rig.run_for(0.6)
    heard_start = rig.audio.produced
    rig.audio.speak(400)
    rig.room.packets_received = 11  # heard after that speech went out
    await rig.run_for(0.6)
    rig.room.emit("reconnecting")
    await rig.settle()
    held_start = rig.audio.produced
    rig.audio.speak(300)
    await rig.settle()
    rig.room.full_restart()
    await rig.settle()
    sent = rig.room.local_participant.writers[-1].samples()
    assert heard_start < held_start
    np.testing.assert_array_equal(sent[: ms(300)], pattern(held_start, ms(300)))


async def test_resend_after_reconnect_is_bounded_by_config(make_rig, caplog):
    rig = make_rig(resend_after_reconnect_s=0.2)
    await _live_session(rig)
    rig.room.emit("reconnecting")
    await rig.settle()
    rig.audio.speak(500)
    await rig.settle()
    with caplog.at_level(logging.INFO, logger="device.session"):
        rig.room.full_restart()
        await rig.settle()
    writer = rig.room.local_participant.writers[-1]
    assert len(writer.samples()) == ms(200)
    # what the bound let go is said, with why: never a silent loss
    assert "audio buffered dropped reason='older than the 0.2 s the buffer keeps' ms=300" in caplog.text
    assert rig.sup.status().preconnect.drop_reason == "older than the 0.2 s the buffer keeps"


async def test_words_held_while_reconnecting_survive_the_sdk_giving_up_and_reach_the_retrys_agent(make_rig):
    """The node hosting the room died with the one the device signals through: the SDK's reconnects fail, the
    session fails (connection-lost) and is retried in a new room; what the user said while the SDK tried goes to
    that room's agent, ahead of what was said while the retry waited and joined."""
    rig = make_rig(resend_after_reconnect_s=5.0)
    await _live_session(rig)
    rig.room.emit("reconnecting")
    await rig.settle()
    held_start = rig.audio.produced
    rig.audio.speak(300)  # said while the SDK tried to reconnect
    await rig.settle()
    rig.room.drop(rtc.DisconnectReason.JOIN_FAILURE)
    await rig.settle()
    (failed,) = rig.of(SessionFailed)
    assert failed.reason is FailureReason.CONNECTION_LOST and failed.retry_in_s is not None
    rig.audio.speak(200)  # said while the retry waited
    await rig.run_for(failed.retry_in_s + 0.1)
    assert len(rig.rooms.made) == 2
    rig.room.agent_joins(state="listening")
    await rig.settle()
    writer = rig.room.local_participant.writers[-1]
    sent = writer.samples()
    np.testing.assert_array_equal(sent[: ms(500)], pattern(held_start, ms(500)))


async def test_a_resume_keeps_the_same_track_and_sends_no_new_buffer(make_rig):
    rig = make_rig()
    await _live_session(rig)
    rig.room.emit("reconnecting")
    await rig.settle()
    rig.audio.speak(200)
    await rig.settle()
    rig.room.emit("reconnected")
    await rig.settle()
    rig.audio.speak(200)
    await rig.settle()
    assert len(rig.room.local_participant.writers) == 1
    assert rig.sup._uplink.route == "live"
    assert [e.state for e in rig.of(AgentStateChanged)][-1] == "listening"


async def test_without_preconnect_a_full_reconnect_puts_the_mic_back_on_the_live_track(make_rig):
    rig = make_rig(preconnect=False)
    await _live_session(rig)
    source = rig.media.sources[0]
    live_before = len(source.samples())
    rig.room.full_restart()
    await rig.settle()
    rig.room.agent_subscribes_mic()
    await rig.settle()
    resumed = rig.audio.produced
    rig.audio.speak(200)
    await rig.settle()
    after = source.samples()[live_before:]
    np.testing.assert_array_equal(after, pattern(resumed, ms(200)))  # the agent hears what is said now, at once
    assert rig.room.local_participant.writers == [] and rig.sup.status().preconnect.route == "live"


async def test_without_preconnect_a_reconnect_without_the_agents_subscription_still_goes_live(make_rig):
    # a resume (same SID) before the agent had subscribed: nothing will ever say "subscribed" again
    rig = make_rig(preconnect=False)
    await rig.start()
    rig.room.agent_joins(state="listening")
    await rig.settle()
    rig.room.emit("reconnecting")
    await rig.settle()
    rig.audio.speak(100)  # said while the connection was down: not sent late on the live track
    await rig.settle()
    rig.room.emit("reconnected")
    await rig.settle()
    resumed = rig.audio.produced
    rig.audio.speak(200)
    await rig.settle()
    np.testing.assert_array_equal(rig.media.sources[0].samples(), pattern(resumed, ms(200)))
    pre = rig.sup.status().preconnect
    assert pre.dropped_ms == 100 and pre.drop_reason


async def test_end_during_reconnect_closes_writer_then_source_then_disconnects(make_rig):
    rig = make_rig()
    await rig.start()
    rig.room.agent_joins(state="initializing")
    await rig.settle()
    order: list[str] = []
    writer = rig.room.local_participant.writers[0]
    source = rig.media.sources[0]
    room = rig.room
    orig_w, orig_s, orig_d = writer.aclose, source.aclose, room.disconnect

    async def w(**kw):
        order.append("writer")
        await orig_w(**kw)

    async def s():
        order.append("source")
        await orig_s()

    async def d(**kw):
        order.append("disconnect")
        await orig_d(**kw)

    writer.aclose, source.aclose, room.disconnect = w, s, d
    rig.room.emit("reconnecting")
    await rig.settle()
    await rig.sup.end()
    await rig.settle()
    assert order[-2:] == ["source", "disconnect"] and order[0] == "writer"
    assert rig.of(SessionEnded)[-1].reason == "requested"


# ---- failures and retries ---------------------------------------------------------------------------------------


async def test_auth_failure_fetches_one_fresh_token_then_connects(make_rig):
    rig = make_rig(rtc.ConnectError("failed to connect: 401 Unauthorized"))
    await rig.start()
    assert len(rig.tokens.requests) == 2
    assert rig.tokens.requests[0] == rig.tokens.requests[1]  # same room, but fetched again
    assert not rig.of(SessionFailed) and rig.rooms.last.connected


async def test_auth_failure_twice_gives_up_with_the_auth_reason(make_rig):
    err = rtc.ConnectError("ws error: HTTP 403 Forbidden")
    rig = make_rig(err, err)
    await rig.start()
    (failed,) = rig.of(SessionFailed)
    assert failed.reason is FailureReason.AUTH and failed.retry_in_s is None
    assert len(rig.tokens.requests) == 2


async def test_unreachable_server_is_retried_after_a_full_jitter_delay_reusing_the_cached_token(make_rig):
    import random

    rig = make_rig(rtc.ConnectError("connection refused"), backoff=BackoffConfig(base_s=2.0, cap_s=30.0, attempts=3))
    await rig.start()
    (failed,) = rig.of(SessionFailed)
    expected = random.Random(7).uniform(0, 2.0)
    assert failed.reason is FailureReason.UNREACHABLE and failed.retry_in_s == pytest.approx(expected)
    await rig.run_for(expected + 0.1)
    assert rig.rooms.last.connected and len(rig.rooms.made) == 2
    assert len(rig.tokens.requests) == 1  # same request, token still valid: the cache served it


async def test_retries_stop_after_the_configured_attempts(make_rig):
    refused = rtc.ConnectError("connection refused")
    rig = make_rig(refused, refused, refused, refused, backoff=BackoffConfig(base_s=0.5, cap_s=1.0, attempts=3))
    await rig.start()
    await rig.run_for(5.0)
    failures = rig.of(SessionFailed)
    assert [f.retry_in_s is None for f in failures] == [False, False, True]
    assert len(rig.rooms.made) == 3


async def test_always_on_never_gives_up(make_rig):
    refused = rtc.ConnectError("connection refused")
    rig = make_rig(*[refused] * 8, mode="always_on", backoff=BackoffConfig(base_s=0.1, cap_s=0.2, attempts=2))
    await rig.start()
    await rig.run_for(3.0)
    failures = rig.of(SessionFailed)
    assert len(failures) == 8 and all(f.retry_in_s is not None for f in failures)
    assert rig.rooms.last.connected


async def test_a_server_that_never_answers_hits_the_connect_deadline(make_rig):
    rig = make_rig("hang", connect_timeout_s=4.0)
    await rig.start()
    await rig.run_for(4.1)
    failed = rig.of(SessionFailed)[0]
    assert failed.reason is FailureReason.UNREACHABLE and "4 s" in failed.detail


async def test_token_errors_carry_their_reason(make_rig):
    from device.session.tokens import TokenError

    rig = make_rig(tokens=FakeTokens(TokenError(FailureReason.TOKEN_ENDPOINT, "HTTP 500")),
                   backoff=BackoffConfig(attempts=1))
    await rig.start()
    (failed,) = rig.of(SessionFailed)
    assert failed.reason is FailureReason.TOKEN_ENDPOINT and failed.retry_in_s is None
    assert rig.rooms.made == []


async def test_end_during_connect_ends_at_once_and_the_late_room_is_disconnected(make_rig):
    rig = make_rig("hang", connect_timeout_s=5.0)
    await rig.sup.start(0)
    await rig.sup.end()
    assert rig.of(SessionEnded)[-1].reason == "requested"
    assert rig.sup.status().phase == "idle"
    await rig.run_for(5.5)
    assert rig.rooms.last.disconnects  # the abandoned attempt cleaned up after itself
    assert not rig.of(SessionFailed)


@pytest.mark.parametrize(
    ("reason", "failure", "retried"),
    [
        (rtc.DisconnectReason.SERVER_SHUTDOWN, FailureReason.SERVER_SHUTDOWN, True),
        (rtc.DisconnectReason.JOIN_FAILURE, FailureReason.CONNECTION_LOST, True),
        (rtc.DisconnectReason.PARTICIPANT_REMOVED, FailureReason.PARTICIPANT_REMOVED, False),
        (rtc.DisconnectReason.DUPLICATE_IDENTITY, FailureReason.DUPLICATE_IDENTITY, False),
    ],
)
async def test_disconnect_reasons_become_typed_failures(make_rig, reason, failure, retried):
    rig = make_rig()
    await rig.start()
    rig.room.drop(reason)
    await rig.settle()
    (failed,) = rig.of(SessionFailed)
    assert failed.reason is failure and (failed.retry_in_s is not None) == retried
    assert rig.sup.status().metrics.failures == {str(failure): 1}


async def test_retry_after_a_lost_connection_uses_a_fresh_room(make_rig):
    rig = make_rig()
    await rig.start()
    rig.room.drop(rtc.DisconnectReason.SERVER_SHUTDOWN)
    await rig.settle()
    await rig.run_for(rig.of(SessionFailed)[0].retry_in_s + 0.1)
    first, second = rig.tokens.requests
    assert first.room_name != second.room_name


async def test_every_report_carries_the_session_number_and_a_start_during_a_retry_adopts_it(make_rig):
    # the device machine drops reports about an earlier session: a press while the supervisor waits to retry
    # (the machine's session 2) must be answered by that retry, not by reports still numbered 1
    rig = make_rig()
    await rig.sup.start(rig.audio.mark(0), session=1)
    await rig.settle()
    assert {e.session for e in rig.events} == {1}
    rig.room.drop(rtc.DisconnectReason.SERVER_SHUTDOWN)
    await rig.settle()
    assert rig.of(SessionFailed)[-1].session == 1
    await rig.sup.start(rig.audio.mark(0), session=2)
    await rig.run_for(rig.of(SessionFailed)[0].retry_in_s + 0.1)
    assert rig.of(SessionConnecting)[-1].session == 2 and rig.of(SessionBuffering)[-1].session == 2


async def test_room_deleted_by_the_agent_ends_the_session(make_rig):
    rig = make_rig()
    await rig.start()
    rig.room.drop(rtc.DisconnectReason.ROOM_DELETED)
    await rig.settle()
    assert rig.of(SessionEnded)[-1].reason == "room-closed" and not rig.of(SessionFailed)


async def test_one_log_line_per_failure(make_rig, caplog):
    rig = make_rig()
    await rig.start()
    with caplog.at_level(logging.WARNING, logger="device.session"):
        rig.room.drop(rtc.DisconnectReason.DUPLICATE_IDENTITY)
        await rig.settle()
    lines = [r.getMessage() for r in caplog.records if "session failed" in r.getMessage()]
    assert len(lines) == 1 and "reason=duplicate-identity" in lines[0]


# ---- timeouts ---------------------------------------------------------------------------------------------------


async def test_idle_timeout_ends_a_push_to_talk_session_when_nobody_speaks(make_rig):
    rig = make_rig(idle_timeout_s=10.0)
    await rig.start()
    rig.room.agent_joins(state="listening")
    await rig.settle()
    for _ in range(9):
        rig.audio.silence(1000)
        await rig.run_for(1.0, step=0.5)
    assert not rig.of(SessionEnded)
    rig.audio.silence(1000)
    await rig.run_for(1.5, step=0.5)
    assert rig.of(SessionEnded)[-1].reason == "idle-timeout"


async def test_user_speech_keeps_an_idle_session_open(make_rig):
    rig = make_rig(idle_timeout_s=3.0)
    await rig.start()
    rig.room.agent_joins(state="listening")
    await rig.settle()
    for _ in range(8):
        rig.audio.speak(500)
        await rig.run_for(1.0, step=0.5)
    assert not rig.of(SessionEnded)


async def test_always_on_has_no_idle_timeout(make_rig):
    rig = make_rig(mode="always_on", idle_timeout_s=2.0)
    await rig.start()
    rig.room.agent_joins(state="listening")
    await rig.run_for(5.0, step=0.5)
    assert not rig.of(SessionEnded)


async def test_max_session_length_ends_the_session(make_rig):
    rig = make_rig(max_session_s=30.0, idle_timeout_s=0.0)
    await rig.start()
    rig.room.agent_joins(state="listening")
    await rig.run_for(30.5, step=0.5)
    assert rig.of(SessionEnded)[-1].reason == "max-length"


async def test_press_to_listening_latency_is_measured_on_the_clock(make_rig):
    rig = make_rig()
    await rig.start()
    agent = rig.room.agent_joins(state="initializing")
    await rig.run_for(1.5)
    rig.room.set_agent_state(agent, "listening")
    await rig.settle()
    assert rig.sup.status().metrics.press_to_listening_ms == 1500


async def test_press_to_listening_is_recorded_once_per_press_over_several_turns(make_rig):
    rig = make_rig()  # push-to-talk: turns through the agent's RPCs
    await rig.sup.start_turn(0)
    agent = rig.room.agent_joins(state="initializing")
    await rig.run_for(0.4)
    rig.room.set_agent_state(agent, "listening")  # first press: 400 ms until the agent listens
    await rig.settle()
    await rig.sup.end_turn()
    for reply_s in (3.0, 5.0):  # the agent answers, then listens again: no press is waiting for that
        rig.room.set_agent_state(agent, "thinking")
        await rig.run_for(0.5)
        rig.room.set_agent_state(agent, "speaking")
        await rig.run_for(reply_s)
        rig.room.set_agent_state(agent, "listening")
        await rig.run_for(1.0)
        await rig.sup.start_turn(rig.audio.mark(0))  # a later press finds it listening: answered as start_turn returns
        await rig.settle()
        await rig.sup.end_turn()
    metrics = rig.sup.status().metrics
    assert metrics.press_to_listening_recent_ms == (400, 0, 0)
    assert metrics.press_to_listening_ms == 0
    assert [m for _, m, _ in rig.room.local_participant.rpc_calls].count("start_turn") == 3


async def test_a_press_during_the_reply_is_answered_when_the_interrupted_agent_listens(make_rig):
    rig = make_rig()
    await rig.sup.start_turn(0)
    agent = rig.room.agent_joins(state="listening")
    await rig.settle()
    await rig.sup.end_turn()
    rig.room.set_agent_state(agent, "speaking")
    await rig.run_for(1.0)
    await rig.sup.start_turn(rig.audio.mark(0))  # barge-in: start_turn returns while the agent still says `speaking`
    await rig.settle()
    await rig.run_for(0.3)
    rig.room.set_agent_state(agent, "listening")
    await rig.settle()
    assert rig.sup.status().metrics.press_to_listening_recent_ms == (0, 300)


async def test_a_press_to_an_agent_without_turn_calls_that_listens_is_answered_at_once(make_rig):
    rig = make_rig()
    await rig.sup.start_turn(0)
    await rig.settle()
    rig.room.local_participant.rpc_errors["start_turn"] = rtc.RpcError(1400, "unsupported method")
    agent = rig.room.agent_joins(state="initializing")
    await rig.run_for(0.2)
    rig.room.set_agent_state(agent, "listening")
    await rig.settle()  # the agent has no start_turn: the device falls back to its own turn detection
    await rig.run_for(2.0)
    await rig.sup.start_turn(rig.audio.mark(0))
    await rig.settle()
    assert rig.sup.status().metrics.press_to_listening_recent_ms == (200, 0)


async def test_recent_press_latencies_are_bounded_and_carried_over_children():
    from device.session.status import PRESS_LATENCIES_KEPT, SessionMetrics

    kept = SessionMetrics(press_to_listening_ms=5, press_to_listening_recent_ms=tuple(range(PRESS_LATENCIES_KEPT)))
    child = SessionMetrics(press_to_listening_ms=90, press_to_listening_recent_ms=(80, 90))
    total = kept + child
    assert total.press_to_listening_recent_ms[-3:] == (PRESS_LATENCIES_KEPT - 1, 80, 90)
    assert len(total.press_to_listening_recent_ms) == PRESS_LATENCIES_KEPT
    assert total.press_to_listening_ms == 90


# ---- turns ------------------------------------------------------------------------------------------------------


async def test_push_to_talk_calls_the_agents_turn_rpcs(make_rig):
    rig = make_rig()
    await rig.start()
    rig.room.agent_joins(state="listening")
    await rig.settle()
    await rig.sup.start_turn(rig.audio.mark(0))
    await rig.sup.end_turn()
    await rig.sup.cancel_turn()
    await rig.run_for(3.0)  # the end waits for the pre-connect stream (here: its budget, nobody subscribes)
    assert rig.room.local_participant.rpc_calls == [
        ("agent-1", "start_turn", ""), ("agent-1", "end_turn", ""), ("agent-1", "cancel_turn", "")]


async def test_a_press_before_the_agent_is_ready_sends_its_turn_rpcs_once_it_is(make_rig):
    rig = make_rig()
    await rig.sup.start_turn(0)
    await rig.settle()
    await rig.sup.end_turn()
    agent = rig.room.agent_joins(state="initializing")
    await rig.settle()
    assert rig.room.local_participant.rpc_calls == []
    rig.room.set_agent_state(agent, "listening")
    await rig.settle()
    rig.room.agent_subscribes_mic()
    await rig.run_for(1.0)
    assert [c[1] for c in rig.room.local_participant.rpc_calls] == ["start_turn", "end_turn"]


async def _pressed_with_start_turn_unanswered(rig) -> asyncio.Event:
    """A press with speech before it; the agent's answer to start_turn waits for the event returned."""
    rig.audio.speak(300)
    await rig.sup.start_turn(rig.audio.mark(200))
    await rig.settle()
    answer = asyncio.Event()
    rig.room.local_participant.rpc_gates["start_turn"] = answer
    return answer


async def test_an_end_turn_waits_until_the_pre_connect_stream_is_complete_and_the_agent_has_fed_it(make_rig):
    """livekit-agents feeds a completed pre-connect buffer to its input only while the input is on, and end_turn
    turns it off: a release right after the agent answered start_turn must not reach it before the buffer (the
    agent would commit an empty turn and never answer — found by the fleet run)."""
    rig = make_rig()
    answer = await _pressed_with_start_turn_unanswered(rig)
    rig.room.agent_joins(state="listening")
    rig.room.agent_subscribes_mic()
    await rig.settle()
    writer = rig.room.local_participant.writers[0]
    await rig.sup.end_turn()  # released while start_turn is unanswered and the stream is open
    await rig.run_for(0.3)
    answer.set()
    await rig.settle()
    calls = rig.room.local_participant.rpc_calls
    assert writer.closed and [c[1] for c in calls] == ["start_turn"]
    await rig.run_for(0.3)
    assert [c[1] for c in calls] == ["start_turn"]  # the agent is given END_AFTER_STREAM_S to feed the buffer
    await rig.run_for(0.3)
    assert [c[1] for c in calls] == ["start_turn", "end_turn"]


async def test_an_agent_without_turn_rpcs_falls_back_once_to_its_own_turn_detection(make_rig, caplog):
    rig = make_rig()
    await rig.start()
    rig.room.agent_joins(state="listening")
    await rig.settle()
    rig.room.local_participant.rpc_errors["start_turn"] = rtc.RpcError(1400, "Method not supported at destination")
    with caplog.at_level(logging.INFO, logger="device.session"):
        for _ in range(3):
            await rig.sup.start_turn(rig.audio.mark(0))
            await rig.sup.end_turn()
            await rig.settle()
    assert [c[1] for c in rig.room.local_participant.rpc_calls] == ["start_turn"]
    assert sum("turns fallback" in r.getMessage() for r in caplog.records) == 1
    assert rig.sup.status().turns == TurnsStatus(rpc=False, fallback=True)


async def test_push_to_talk_keeps_the_preconnect_stream_open_until_the_agent_has_answered_start_turn(make_rig):
    """A push-to-talk agent's input is off until its start_turn runs, and livekit-agents discards a pre-connect
    buffer completed before that: the subscription alone must not end the stream while start_turn is unanswered."""
    rig = make_rig()
    answer = await _pressed_with_start_turn_unanswered(rig)
    agent = rig.room.agent_joins(state="initializing")
    await rig.settle()
    writer = rig.room.local_participant.writers[0]
    rig.room.set_agent_state(agent, "listening")
    rig.room.agent_subscribes_mic()
    rig.audio.speak(200)
    await rig.run_for(0.5)
    assert [c[1] for c in rig.room.local_participant.rpc_calls] == ["start_turn"]  # sent, not answered
    assert not writer.closed and rig.media.sources[0].frames == []
    answer.set()
    await rig.settle()
    assert writer.closed and rig.sup._uplink.streams[0].closed == "subscribed"
    rig.audio.speak(100)
    await rig.settle()
    sent, live = writer.samples(), rig.media.sources[0].samples()
    uplink = rig.sup._uplink
    assert uplink.live_starts == [uplink.streams[0].end]  # still seamless: nothing lost, nothing twice
    np.testing.assert_array_equal(np.concatenate([sent, live]), pattern(uplink.streams[0].first, len(sent) + len(live)))


async def test_an_unanswered_start_turn_holds_the_stream_no_longer_than_its_budget(make_rig):
    rig = make_rig()
    await rig.sup.start_turn(rig.audio.mark(0))
    await rig.settle()
    rig.room.local_participant.rpc_gates["start_turn"] = asyncio.Event()  # never answered
    rig.room.agent_joins(state="listening")
    rig.room.agent_subscribes_mic()
    await rig.settle()
    writer = rig.room.local_participant.writers[0]
    await rig.run_for(2.4)
    assert not writer.closed
    await rig.run_for(0.2)
    assert writer.closed and rig.sup._uplink.streams[0].closed == "deadline"  # live before the agent's 3 s limit


async def test_a_stream_opened_outside_push_to_talk_goes_live_at_the_subscription(make_rig):
    rig = make_rig(mode="toggle")
    await rig.start()
    rig.room.agent_joins(state="listening")
    await rig.settle()
    rig.room.agent_subscribes_mic()
    await rig.settle()
    assert rig.room.local_participant.writers[0].closed


async def test_a_press_while_the_agent_speaks_is_barge_in(make_rig):
    rig = make_rig()
    await rig.start()
    rig.room.agent_joins(state="speaking")
    await rig.settle()
    await rig.sup.start_turn(rig.audio.mark(0))
    await rig.settle()
    assert rig.audio.player.flushes == 1
    assert rig.room.local_participant.rpc_calls[-1][1] == "start_turn"


async def test_turn_rpcs_are_not_called_outside_push_to_talk(make_rig):
    rig = make_rig(mode="toggle")
    await rig.start()
    rig.room.agent_joins(state="listening")
    await rig.settle()
    await rig.sup.start_turn(rig.audio.mark(0))
    await rig.settle()
    assert rig.room.local_participant.rpc_calls == []


# ---- mute, text, agent-driven control ---------------------------------------------------------------------------


async def test_mute_mutes_the_track_and_sends_no_audio(make_rig):
    rig = make_rig(preconnect=False)
    await rig.start()
    await rig.sup.set_muted(True)
    rig.audio.speak(200)
    await rig.settle()
    assert rig.room.mic.track.muted and rig.media.sources[0].frames == []
    await rig.sup.set_muted(False)
    rig.audio.speak(200)
    await rig.settle()
    assert not rig.room.mic.track.muted and len(rig.media.sources[0].samples()) == ms(200)


def _sent(rig) -> np.ndarray:
    """Everything the room got from the mic: the pre-connect streams, then the live track."""
    streams = [w.samples() for w in rig.room.local_participant.writers]
    return np.concatenate([*streams, rig.media.sources[0].samples()])


async def test_a_mute_while_connecting_drops_the_buffered_speech_and_unmuting_sends_only_what_follows(make_rig):
    rig = make_rig()
    await rig.start()
    rig.audio.speak(300)  # buffered: no agent yet
    await rig.settle()
    await rig.sup.set_muted(True)
    rig.audio.speak(200)  # said while muted
    await rig.settle()
    rig.room.agent_joins(state="listening")
    await rig.settle()
    assert len(_sent(rig)) == 0  # none of it reaches the agent
    pre = rig.sup.status().preconnect
    assert pre is not None and pre.drop_reason == "muted" and pre.dropped_ms == 300
    await rig.sup.set_muted(False)
    resumed = rig.audio.produced
    rig.audio.speak(200)
    await rig.settle()
    rig.room.agent_subscribes_mic()
    await rig.settle()
    rig.audio.speak(200)
    await rig.settle()
    np.testing.assert_array_equal(_sent(rig), pattern(resumed, ms(400)))  # from the unmute point on, all of it


async def test_a_mute_while_streaming_drops_what_was_not_yet_written(make_rig):
    rig = make_rig()
    await rig.start()
    rig.room.agent_joins(state="initializing")
    await rig.settle()
    rig.audio.speak(200)
    await rig.settle()
    written = len(_sent(rig))
    rig.audio.speak(60)  # less than a stream write: still pending in the uplink
    await rig.settle()
    await rig.sup.set_muted(True)
    rig.room.agent_subscribes_mic()  # the stream closes: its last piece must not be the muted one's
    rig.audio.speak(200)
    await rig.settle()
    assert len(_sent(rig)) == written and rig.room.local_participant.writers[0].closed
    assert rig.sup.status().preconnect.drop_reason == "muted"


async def test_a_mute_while_the_stream_opens_keeps_the_buffer_out_of_it(make_rig):
    rig = make_rig()
    await rig.start()
    rig.audio.speak(300)
    await rig.settle()
    lp = rig.room.local_participant
    gate = asyncio.Event()
    open_stream = lp.stream_bytes

    async def slow_open(*args, **kwargs):
        await gate.wait()
        return await open_stream(*args, **kwargs)

    lp.stream_bytes = slow_open
    rig.room.agent_joins(state="listening")  # the uplink takes the buffer and waits for the stream
    await rig.settle()
    await rig.sup.set_muted(True)
    gate.set()
    await rig.settle()
    assert lp.writers and len(_sent(rig)) == 0
    assert rig.sup.status().preconnect.drop_reason == "muted"


async def test_audio_captured_while_muted_is_not_sent_even_when_the_uplink_reads_it_after_the_unmute(make_rig):
    rig = make_rig(preconnect=False)
    await rig.start()
    uplink = rig.sup._uplink
    uplink.set_muted(True)
    rig.audio.speak(200)  # captured while muted ...
    uplink.set_muted(False)  # ... and the uplink has not read it yet (no await in between)
    resumed = rig.audio.produced
    rig.audio.speak(200)
    await rig.settle()
    np.testing.assert_array_equal(_sent(rig), pattern(resumed, ms(200)))


async def test_final_transcripts_are_kept_for_status_and_interim_ones_ignored(make_rig):
    rig = make_rig()
    await rig.start()
    handler = rig.room.text_handlers["lk.transcription"]
    handler(FakeTextReader("hel", {"lk.transcription_final": "false"}), "agent-1")
    handler(FakeTextReader("hello there", {"lk.transcription_final": "true"}), "agent-1")
    await rig.settle()
    assert rig.sup.status().transcripts == (TranscriptLine("agent-1", "hello there"),)


async def test_send_text_goes_on_lk_chat_and_needs_a_session(make_rig):
    rig = make_rig()
    with pytest.raises(SessionError, match="start one first"):
        await rig.sup.send_text("hi")
    await rig.start()
    await rig.sup.send_text("what time is it?")
    assert rig.room.local_participant.texts == [("lk.chat", "what time is it?")]


async def test_the_agent_can_set_the_volume_read_the_status_and_end_the_session(make_rig):
    rig = make_rig()
    await rig.start()
    rig.room.agent_joins(state="listening")  # only the session's agent commands the device (test_device_rpc.py)
    await rig.settle()
    lp = rig.room.local_participant
    assert json.loads(lp.invoke("device.set_volume", '{"volume": 0.3}')) == {"volume": 0.3}
    assert rig.audio.player.volume == 0.3
    for bad in ('{"volume": 2}', "{}", "nope", '{"volume": true}'):
        with pytest.raises(rtc.RpcError):
            lp.invoke("device.set_volume", bad)
    assert json.loads(lp.invoke("device.get_status"))["phase"] == "connected"
    lp.invoke("device.end_session")
    await rig.settle()
    assert rig.of(SessionEnded)[-1].reason == "agent-ended"


async def test_the_agent_s_protocol_is_in_the_status_and_logged_once_when_it_is_ready(make_rig, caplog):
    """An agent speaking the voice-device protocol says so in `voice_device.agent_protocol` (PROTOCOL.md); one
    without it is served all the same, and status and log say it speaks none."""
    rig = make_rig()
    await rig.start()
    with caplog.at_level(logging.INFO, logger="device.session"):
        agent = rig.room.agent_joins(state="listening", attributes={"voice_device.agent_protocol": "1.0"})
        await rig.settle()
        rig.room.set_agent_state(agent, "thinking")
        await rig.settle()
    assert rig.sup.status().agent.protocol == "1.0"
    lines = [r.getMessage() for r in caplog.records if "voice-device protocol" in r.getMessage()]
    assert lines == ["agent speaks voice-device protocol identity=agent-1 version=1.0"]


async def test_an_agent_that_speaks_no_protocol_is_served_and_the_device_says_so_at_its_next_state(make_rig, caplog):
    """The companion says which protocol its agent speaks just after the session started (the agent's first
    state): "none" waits for the agent's next state, so that a companion's agent is not called one that speaks none."""
    rig = make_rig()
    await rig.start()
    with caplog.at_level(logging.INFO, logger="device.session"):
        agent = rig.room.agent_joins(state="listening")
        await rig.settle()
        assert not [r for r in caplog.records if "voice-device protocol" in r.getMessage()]
        rig.room.set_agent_state(agent, "thinking")
        await rig.settle()
    assert rig.sup.status().agent.protocol is None
    lines = [r.getMessage() for r in caplog.records if "voice-device protocol" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("agent speaks no voice-device protocol identity=agent-1")
    assert json.loads(rig.room.local_participant.invoke("device.get_status"))["phase"] == "connected"


async def test_a_companion_s_protocol_set_just_after_the_first_state_is_the_only_line(make_rig, caplog):
    rig = make_rig()
    await rig.start()
    with caplog.at_level(logging.INFO, logger="device.session"):
        agent = rig.room.agent_joins(state="listening")
        await rig.settle()
        agent.attributes["voice_device.agent_protocol"] = "1.0"
        rig.room.emit("participant_attributes_changed", {"voice_device.agent_protocol": "1.0"}, agent)
        await rig.settle()
        rig.room.set_agent_state(agent, "thinking")
        await rig.settle()
    lines = [r.getMessage() for r in caplog.records if "voice-device protocol" in r.getMessage()]
    assert lines == ["agent speaks voice-device protocol identity=agent-1 version=1.0"]
    assert rig.sup.status().agent.protocol == "1.0"


# ---- wake_word: barge-in without turns, the agent's "user away", the follow-up window's speech ------------------


def _frame(value: int = 1000, ms_: int = 20) -> rtc.AudioFrame:
    n = 16000 * ms_ // 1000
    return rtc.AudioFrame(np.full(n, value, np.int16).tobytes(), 16000, 1, n)


async def _wake_word_rig_with_agent_audio(make_rig, state: str):
    """A wake_word session whose agent (in `state`) publishes audio the device plays: (rig, agent, its stream)."""
    rig = make_rig(mode="wake_word")
    await rig.start()
    agent = rig.room.agent_joins(state=state)
    rig.room.publish_agent_audio(agent)
    await rig.settle()
    return rig, agent, rig.media.streams[-1]


async def test_an_interruption_drops_the_agents_audio_until_it_stops_speaking(make_rig):
    rig, agent, stream = await _wake_word_rig_with_agent_audio(make_rig, "speaking")
    stream.queue.put_nowait(_frame())
    await rig.settle()
    assert len(rig.audio.player.frames) == 1
    await rig.sup.interrupt()
    for _ in range(3):
        stream.queue.put_nowait(_frame())
    await rig.settle()
    assert len(rig.audio.player.frames) == 1, "the agent's audio went on playing after the interruption"
    rig.room.set_agent_state(agent, "listening")  # it heard the user and stopped
    await rig.settle()
    stream.queue.put_nowait(_frame())
    await rig.settle()
    assert len(rig.audio.player.frames) == 2
    assert rig.room.local_participant.rpc_calls == []  # no turns in this mode: the live mic interrupts it


async def test_an_interruption_while_the_agent_is_not_speaking_changes_nothing(make_rig):
    rig, _, stream = await _wake_word_rig_with_agent_audio(make_rig, "listening")
    await rig.sup.interrupt()
    stream.queue.put_nowait(_frame())
    await rig.settle()
    assert len(rig.audio.player.frames) == 1


AWAY = json.dumps({"type": "user_state_changed", "old_state": "listening", "new_state": "away", "created_at": 1.0})


async def test_the_agent_reporting_the_user_away_ends_a_wake_word_conversation(make_rig):
    rig = make_rig(mode="wake_word")
    await rig.start()
    rig.room.agent_joins(state="listening")
    await rig.settle()
    events = rig.room.text_handlers["lk.agent.events"]
    for other in ('{"type": "agent_state_changed", "old_state": "thinking", "new_state": "listening"}',
                  '{"type": "user_state_changed", "old_state": "speaking", "new_state": "listening"}', "not json"):
        events(FakeTextReader(other, {}), "agent-1")
    events(FakeTextReader(AWAY, {}), "someone-else")  # not our agent
    await rig.settle()
    assert rig.of(SessionEnded) == []
    events(FakeTextReader(AWAY, {}), "agent-1")
    await rig.settle()
    assert [e.reason for e in rig.of(SessionEnded)] == ["user-away"]


async def test_the_agent_reporting_the_user_away_means_nothing_in_other_modes(make_rig):
    rig = make_rig(mode="toggle")
    await rig.start()
    rig.room.agent_joins(state="listening")
    await rig.settle()
    rig.room.text_handlers["lk.agent.events"](FakeTextReader(AWAY, {}), "agent-1")
    await rig.settle()
    assert rig.of(SessionEnded) == [] and rig.sup.status().phase == "connected"


async def test_the_speech_gate_is_the_voice_detector_in_wake_word_mode_and_the_energy_gate_elsewhere(make_rig):
    rig = make_rig(mode="wake_word")
    await rig.sup.start(0, listen_from=3200)
    await rig.settle()
    gate = rig.sup._uplink.speech
    assert isinstance(gate, VadGate) and gate.from_index == 3200 + int(VAD_RELEASE_S * 16000)
    other = make_rig(mode="toggle", speech_threshold_dbfs=-40.0)
    await other.start()
    assert isinstance(other.sup._uplink.speech, EnergyGate) and other.sup._uplink.speech.threshold == -40.0
