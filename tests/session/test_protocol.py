"""The session-process protocol: each message crosses the channel as itself, each call reaches its port method."""

from __future__ import annotations

import socket
import typing

import pytest

from device.config.schema import Config
from device.core.vocabulary import FailureReason, SessionFailed
from device.session.process import protocol as p
from device.session.process.ipc import Channel
from device.session.status import SessionStatus

EXAMPLES: list[p.Message] = [
    p.Hello(Config(), "device-1", True, 0.5, 16000, "tests.session.hostfactory:scripted", (("", 20),)),
    p.Call(7, p.StartCall(mark=480, session=3)),
    p.Close(),
    p.Ready(1234),
    p.StartFailed("ImportError: no livekit"),
    p.Reply(7, None),
    p.Reply(8, "no session is connected"),
    p.Log("device.session.supervisor", 30, "session failed", None),
    p.Status(SessionStatus(phase="connected", room="r1")),
    p.Emitted(SessionFailed(FailureReason.AUTH, "401", None, session=3)),
    p.Play(b"\x00\x00" * 480, 48000, 1, 480),
    p.PlayEnd(),
    p.Flush(),
    p.Volume(0.25),
    p.Over(),
    p.OpenReader(2, 4800),
    p.CloseReader(2),
    p.Closed(),
    p.Beat(),
]


def test_the_examples_cover_every_message_type() -> None:
    assert {type(m) for m in EXAMPLES} == set(p.MESSAGE_TYPES)
    assert set(p.MESSAGE_TYPES) == set(typing.get_args(p.ToChild)) | set(typing.get_args(p.ToDaemon))


async def test_every_message_crosses_the_channel_as_itself() -> None:
    a_sock, b_sock = socket.socketpair()
    a, b = await Channel.open(a_sock), await Channel.open(b_sock)
    for message in EXAMPLES:
        a.send(message)
    await a.drain()
    for message in EXAMPLES:
        assert await b.recv() == message
    a.close()
    b.close()


class RecordingPort:
    """A SessionPort that writes down each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...], dict[str, object]]] = []

    def __getattr__(self, name: str) -> typing.Any:
        async def call(*args: object, **kwargs: object) -> None:
            self.calls.append((name, args, kwargs))

        return call


CALLS = [
    (p.StartCall(480, 2), ("start", (480,), {"session": 2, "listen_from": None})),
    (p.StartCall(480, 2, 960), ("start", (480,), {"session": 2, "listen_from": 960})),
    (p.StartTurnCall(960, 5), ("start_turn", (960,), {"session": 5})),
    (p.EndCall("control"), ("end", ("control",), {})),
    (p.EndTurnCall(), ("end_turn", (), {})),
    (p.CancelTurnCall(), ("cancel_turn", (), {})),
    (p.InterruptCall(), ("interrupt", (), {})),
    (p.SetMutedCall(True), ("set_muted", (True,), {})),
    (p.SendTextCall("hello"), ("send_text", ("hello",), {})),
    (p.WaitQuietCall(), ("wait_quiet", (), {})),
    (p.RefreshCall(), ("refresh", (), {})),
]


@pytest.mark.parametrize(("request_", "expected"), CALLS)
async def test_each_call_reaches_its_port_method(request_: p.Request, expected: tuple[object, ...]) -> None:
    port = RecordingPort()
    await p.perform(port, request_)  # type: ignore[arg-type]
    assert port.calls == [expected]


def test_every_request_type_is_among_the_calls_checked() -> None:
    assert {type(r) for r, _ in CALLS} == set(typing.get_args(p.Request))
