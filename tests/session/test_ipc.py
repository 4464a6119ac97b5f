"""The daemon ↔ session-process channel: frames, the configuration's read-only maps, and what ends it."""

from __future__ import annotations

import pickle
import socket
import struct
import types

import pytest

from device.config.schema import Config, LiveKitConfig
from device.session.process.ipc import MAX_MESSAGE, Channel, ChannelClosed, encode
from device.session.process.protocol import Hello, Play, Status
from device.session.status import SessionStatus


async def pair() -> tuple[Channel, socket.socket]:
    ours, theirs = socket.socketpair()
    return await Channel.open(ours), theirs


async def test_messages_arrive_whole_and_in_order_with_the_configs_read_only_maps() -> None:
    a_sock, b_sock = socket.socketpair()
    a, b = await Channel.open(a_sock), await Channel.open(b_sock)
    config = Config(livekit=LiveKitConfig(attributes=types.MappingProxyType({"room": "kitchen"})))
    a.send(Hello(config, "device-1", False, 0.8, 48000, None, (("", 20),)))
    a.send(Play(b"\x01\x00" * 480, 48000, 1, 480))
    await a.drain()
    hello = await b.recv()
    assert isinstance(hello, Hello) and hello.config == config
    assert isinstance(hello.config.livekit.attributes, types.MappingProxyType)
    assert await b.recv() == Play(b"\x01\x00" * 480, 48000, 1, 480)
    a.close()
    with pytest.raises(ChannelClosed):
        await b.recv()
    b.close()


async def test_an_oversized_frame_ends_the_channel_instead_of_allocating_it() -> None:
    chan, theirs = await pair()
    theirs.sendall(struct.pack("!I", MAX_MESSAGE + 1))
    with pytest.raises(ChannelClosed, match="bytes"):
        await chan.recv()
    chan.close()
    theirs.close()


@pytest.mark.parametrize("body", [pickle.dumps(["not", "a", "message"]), pickle.dumps(()),
                                  pickle.dumps(("status", {"phase": "idle"}))])
async def test_a_message_that_is_not_one_of_the_protocols_ends_the_channel(body: bytes) -> None:
    chan, theirs = await pair()
    theirs.sendall(struct.pack("!I", len(body)) + body)
    with pytest.raises(ChannelClosed, match="malformed"):
        await chan.recv()
    chan.close()
    theirs.close()


async def test_a_frame_cut_short_by_the_other_end_closing_ends_the_channel() -> None:
    chan, theirs = await pair()
    frame = encode(Status(SessionStatus()))
    theirs.sendall(frame[:-3])
    theirs.close()
    with pytest.raises(ChannelClosed):
        await chan.recv()
    chan.close()
