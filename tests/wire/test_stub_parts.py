"""The stub SFU's parts without a network namespace: versions, join parameter, pre-connect rules, SDP, recorder,
the agent's RPCs, and the stub process refusing an SDK that speaks another protocol."""

from __future__ import annotations

import asyncio
import fractions
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from livekit.protocol import models, rtc

from tests.stubsfu import __main__ as stub_main
from tests.stubsfu import datastreams, versions
from tests.stubsfu.agent import AgentConfig, ScriptedAgent
from tests.stubsfu.datastreams import IncomingStream, StreamAssembler
from tests.stubsfu.joinreq import BadJoinRequest, decode_join_request, encode_join_request
from tests.stubsfu.peer import recvonly_audio_mids, split_candidates
from tests.stubsfu.preconnect import TOPIC, PreConnectBuffers
from tests.stubsfu.recorder import SessionRecorder
from tests.wire.harness import PYTHON, ROOT, LineProcess, mint_token

# ---- versions ----------------------------------------------------------------------------------------------------


def test_installed_packages_match_the_versions_the_stub_speaks() -> None:
    versions.check_installed()


def test_another_installed_sdk_version_fails_loudly_naming_it() -> None:
    with pytest.raises(versions.VersionMismatch, match=r"livekit 1\.3\.0 \(stub speaks 1\.2\.1\)"):
        versions.check_installed({**versions.PINNED, "livekit": "1.3.0"})
    with pytest.raises(versions.VersionMismatch, match="aiortc missing"):
        versions.check_installed({**versions.PINNED, "aiortc": None})


def test_the_stub_refuses_to_start_with_other_package_versions(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(versions, "installed_versions", lambda: {**versions.PINNED, "livekit-protocol": "9.9.9"})
    assert stub_main.main(["--port", "0"]) == 3
    assert "livekit-protocol 9.9.9" in capsys.readouterr().err


def test_a_join_announcing_another_signalling_protocol_is_refused_and_stops_the_stub(tmp_path: Path) -> None:
    import websockets.sync.client
    from websockets.exceptions import InvalidStatus

    stub = LineProcess([PYTHON, "-m", "tests.stubsfu", "--host", "127.0.0.1", "--port", "0",
                        "--agent-delay", "never"], tmp_path / "stub.log")
    try:
        url = stub.wait_line(lambda line: line.startswith("stubsfu ready"), timeout=20).split("url=")[1].split()[0]
        join = rtc.JoinRequest(client_info=models.ClientInfo(protocol=versions.SIGNAL_PROTOCOL - 1, sdk=9))
        with pytest.raises(InvalidStatus) as refused:
            websockets.sync.client.connect(f"{url}/rtc/v1?join_request={encode_join_request(join)}",
                                           additional_headers={"Authorization": f"Bearer {mint_token()}"},
                                           open_timeout=10)
        assert refused.value.response.status_code == 400
        assert stub.wait(timeout=10) == 3
    finally:
        stub.stop()
    assert f"speaks signalling protocol {versions.SIGNAL_PROTOCOL - 1}" in stub.log_tail()


def test_cli_help_documents_the_knobs() -> None:
    result = subprocess.run([sys.executable, "-m", "tests.stubsfu", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0
    for flag in ("--host", "--port", "--api-key", "--api-secret", "--agent-delay", "--agent-reply", "--record",
                 "--ptt", "--control"):
        assert flag in result.stdout


# ---- join_request ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_join_request_parameter_round_trips(compress: bool) -> None:
    join = rtc.JoinRequest(client_info=models.ClientInfo(protocol=18), reconnect=True, participant_sid="PA_x")
    join.publisher_offer.sdp = "v=0\r\n" * 50
    assert decode_join_request(encode_join_request(join, compress=compress)) == join


def test_garbage_join_request_is_rejected() -> None:
    with pytest.raises(BadJoinRequest):
        decode_join_request("!!not-base64!!")
    with pytest.raises(BadJoinRequest):
        decode_join_request("")


# ---- pre-connect rules -------------------------------------------------------------------------------------------


def _stream(track_id: str | None, opened: float, closed: float | None = None, **attrs: str) -> IncomingStream:
    attributes = {"sampleRate": "24000", "channels": "1", **attrs}
    if track_id is not None:
        attributes["trackId"] = track_id
    return IncomingStream(stream_id="s", sender_identity="dev", topic=TOPIC, mime_type="application/octet-stream",
                          attributes=attributes, opened=opened, chunks=[b"\x01\x00" * 10], closed=closed)


def _buffers() -> PreConnectBuffers:
    return PreConnectBuffers(wait_timeout_s=0.2, stream_deadline_s=0.3, max_age_s=1.0)


async def test_buffer_completed_just_before_the_agent_asks_is_used() -> None:
    b = _buffers()
    now = time.monotonic()
    b.on_open(_stream("TR_1", opened=now - 0.2, closed=now - 0.1))
    outcome = await b.wait_for("TR_1")
    assert (outcome.status, outcome.sample_rate, outcome.channels) == ("used", 24000, 1)


async def test_buffer_completing_while_the_agent_waits_is_used() -> None:
    b = _buffers()
    stream = _stream("TR_1", opened=time.monotonic())
    b.on_open(stream)

    async def close_soon() -> None:
        await asyncio.sleep(0.05)
        stream.closed = time.monotonic()
        b.on_close(stream)

    closer = asyncio.create_task(close_soon())
    assert (await b.wait_for("TR_1")).status == "used"
    await closer


async def test_buffer_older_than_one_second_when_asked_is_dropped() -> None:
    b = _buffers()
    now = time.monotonic()
    b.on_open(_stream("TR_1", opened=now - 1.5, closed=now - 1.2))
    assert (await b.wait_for("TR_1")).status == "too_old"


async def test_stream_without_track_id_is_ignored_and_the_agent_times_out() -> None:
    b = _buffers()
    b.on_open(_stream(None, opened=time.monotonic(), closed=time.monotonic()))
    assert len(b.ignored) == 1
    assert (await b.wait_for("TR_1")).status == "timeout"


async def test_buffer_naming_another_track_is_never_used() -> None:
    b = _buffers()
    b.on_open(_stream("TR_old", opened=time.monotonic(), closed=time.monotonic()))
    assert (await b.wait_for("TR_new")).status == "timeout"
    assert b.received_track_ids() == ["TR_old"]


async def test_missing_sample_rate_is_an_error() -> None:
    b = _buffers()
    stream = _stream("TR_1", opened=time.monotonic(), closed=time.monotonic())
    del stream.attributes["sampleRate"]
    b.on_open(stream)
    assert (await b.wait_for("TR_1")).status == "missing_attributes"


async def test_stream_still_open_past_its_deadline_is_not_used() -> None:
    b = _buffers()
    b.on_open(_stream("TR_1", opened=time.monotonic()))  # never closed
    assert (await b.wait_for("TR_1")).status == "too_slow"


# ---- SDP helpers -------------------------------------------------------------------------------------------------

OFFER = "\r\n".join([
    "v=0", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=recvonly",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:1", "a=sendonly",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=recvonly", "a=mid:2",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "a=mid:3", "",
])


def test_recvonly_audio_sections_are_where_the_stub_can_send() -> None:
    assert recvonly_audio_mids(OFFER) == ["0", "2"]


def test_candidates_move_from_the_answer_to_trickle() -> None:
    answer = "\r\n".join(["v=0", "m=audio 9 X 111", "a=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host",
                          "a=end-of-candidates", "a=mid:0", ""])
    sdp, candidates = split_candidates(answer)
    assert "a=candidate" not in sdp and "end-of-candidates" not in sdp and "a=mid:0" in sdp
    assert candidates == [{"candidate": "candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host", "sdpMid": "0",
                           "sdpMLineIndex": 0}]


# ---- recorder ----------------------------------------------------------------------------------------------------


def _frame(samples: np.ndarray, pts: int) -> av.AudioFrame:
    stereo = np.repeat(samples.astype(np.int16), 2).reshape(1, -1)  # aiortc decodes Opus to packed stereo
    frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    frame.sample_rate, frame.pts, frame.time_base = 48000, pts, fractions.Fraction(1, 48000)
    return frame


def test_recorder_joins_buffer_and_live_audio_skipping_silence_before_the_first_sound(tmp_path: Path) -> None:
    rec = SessionRecorder(tmp_path, {})
    rec.set_preconnect(np.arange(1, 101, dtype="<i2").tobytes(), 48000, 1)
    rec.add_live(_frame(np.zeros(960), 0))  # digital silence before the client feeds the track
    sound = np.full(960, 1000)
    sound[:10] = 0
    rec.add_live(_frame(sound, 960))
    rec.add_live(_frame(np.full(960, 500), 3 * 960))  # one packet missing → filled with silence
    heard = rec.heard()
    assert rec.meta["live_first_sample_index"] == 100
    assert np.array_equal(heard[:100], np.arange(1, 101))
    assert heard[100] == 1000 and len(heard) == 100 + 950 + 960 + 960
    assert np.all(heard[100 + 950:100 + 950 + 960] == 0) and heard[-1] == 500
    assert rec.meta["live_trimmed_ms"] == pytest.approx((960 + 10) / 48, abs=0.1)
    rec.flush(b"raw")
    assert (tmp_path / "preconnect.raw").read_bytes() == b"raw"
    assert (tmp_path / "heard.wav").stat().st_size > 44 and (tmp_path / "meta.json").exists()


def test_reply_wav_of_any_rate_and_layout_becomes_48k_mono(tmp_path: Path) -> None:
    import wave

    from tests.stubsfu.reply import load_wav

    path = tmp_path / "reply.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.full(2 * 1600, 1000, dtype="<i2").tobytes())  # 0.1 s of stereo
    samples = load_wav(path)
    assert abs(len(samples) - 4800) <= 48
    assert np.median(samples) == pytest.approx(1000, abs=5)


# ---- the agent's RPCs ---------------------------------------------------------------------------------------------


class FakeHost:
    def __init__(self) -> None:
        self.sent: list[models.DataPacket] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish_participant(self, info: models.ParticipantInfo) -> None:
        pass

    def track_subscribed(self, track_sid: str) -> None:
        pass

    def send_data(self, destination_identity: str, packet: models.DataPacket) -> None:
        self.sent.append(packet)

    def offer_track(self, participant_sid: str, track_sid: str, make_track: Any) -> None:
        pass

    def record_event(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))


def _rpc_packet(agent: ScriptedAgent, method: str) -> models.DataPacket:
    packet = models.DataPacket(participant_identity="dev", destination_identities=[agent.info.identity])
    packet.rpc_request.id = f"rq-{method}"
    packet.rpc_request.method = method
    return packet


@pytest.mark.parametrize(("ptt", "error"), [(True, None), (False, datastreams.RPC_UNSUPPORTED_METHOD)])
async def test_agent_acks_every_rpc_and_answers_ptt_methods_only_when_offered(ptt: bool, error: int | None) -> None:
    host = FakeHost()
    agent = ScriptedAgent(host, AgentConfig(ptt_rpcs=ptt))
    agent.join()
    agent.on_packet("dev", _rpc_packet(agent, "start_turn"))
    kinds = [p.WhichOneof("value") for p in host.sent]
    assert kinds == ["rpc_ack", "rpc_response"]
    response = host.sent[1].rpc_response
    assert response.request_id == "rq-start_turn"
    assert (response.error.code if response.HasField("error") else None) == error
    await agent.close()


def test_agent_reassembles_a_byte_stream_from_header_chunks_and_trailer() -> None:
    opened: list[IncomingStream] = []
    closed: list[IncomingStream] = []
    assembler = StreamAssembler(opened.append, closed.append)
    packets = datastreams.text_stream_packets("hello " * 5000, "t", "dev", "PA_1", "agent", iter(range(1, 99)).__next__,
                                              attributes={"a": "1"}, chunk_size=1000)
    assert all(assembler.feed(p) for p in packets)
    assert opened[0].topic == "t" and opened[0].attributes == {"a": "1"}
    assert closed[0].payload == ("hello " * 5000).encode()
    assert [p.sequence for p in packets] == list(range(1, len(packets) + 1))
