"""The daemon ↔ session-process channel: `protocol` messages as length-prefixed pickles on a private socketpair.

Pickle is safe here: both ends are this program, the socket is a `socketpair()` inherited by exactly one child,
never a path or a port anyone else can reach. Every message is one `write()` of one frame, so messages sent
from different tasks never interleave, and they arrive in the order they were written.
"""

from __future__ import annotations

import asyncio
import copyreg
import pickle
import socket
import struct
import types
from typing import cast

from device.session.process.protocol import MESSAGE_TYPES, Message

_HEADER = struct.Struct("!I")
MAX_MESSAGE = 64 * 2**20  # a message this big is a bug, not audio (the largest is a 200 ms chunk)


# The configuration's read-only maps (attributes, metadata) travel as the same read-only maps.
def readonly(mapping: dict[str, str]) -> types.MappingProxyType[str, str]:
    return types.MappingProxyType(mapping)


copyreg.pickle(types.MappingProxyType, lambda m: (readonly, (dict(m),)))


class ChannelClosed(Exception):
    """The other end went away."""


def encode(message: Message) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


class Channel:
    """One end of the socketpair, on the running loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_MESSAGE)
        return cls(reader, writer)

    def send(self, message: Message) -> None:
        """Queue one message (never blocks; the socket's buffer and the other end's reader keep up)."""
        if self._writer.is_closing():
            return
        self._writer.write(encode(message))

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as e:
            raise ChannelClosed(str(e)) from e

    async def recv(self) -> Message:
        try:
            header = await self._reader.readexactly(_HEADER.size)
            (size,) = _HEADER.unpack(header)
            if size > MAX_MESSAGE:
                raise ChannelClosed(f"message of {size} bytes")
            body = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise ChannelClosed("the other end closed the channel") from e
        message = pickle.loads(body)
        if not isinstance(message, MESSAGE_TYPES):
            raise ChannelClosed(f"malformed message {type(message).__name__}: not one of the protocol's")
        return cast("Message", message)  # the isinstance above is the check

    def close(self) -> None:
        self._writer.close()
