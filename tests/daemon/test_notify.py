"""sd_notify as systemd receives it: one datagram per message on $NOTIFY_SOCKET (a path or @abstract)."""

from __future__ import annotations

import logging
import time

import pytest

from device.daemon.notify import Notifier, watchdog_interval
from tests.daemon.conftest import NotifySocket


def test_ready_with_status_is_one_datagram_on_a_path_socket(notify_socket: NotifySocket) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": notify_socket.address})
    assert n.enabled and n.ready("idle")
    assert notify_socket.messages() == [{"READY": "1", "STATUS": "idle"}]


def test_messages_reach_an_abstract_socket(abstract_notify_socket: NotifySocket) -> None:
    n = Notifier(abstract_notify_socket.address)
    assert n.status("listening") and n.watchdog() and n.stopping()
    assert abstract_notify_socket.messages() == [{"STATUS": "listening"}, {"WATCHDOG": "1"}, {"STOPPING": "1"}]


def test_reloading_carries_the_monotonic_timestamp_systemd_253_wants(notify_socket: NotifySocket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier(notify_socket.address).reloading("reloading config")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    (msg,) = notify_socket.messages()
    assert msg["RELOADING"] == "1" and msg["STATUS"] == "reloading config"
    assert before <= int(msg["MONOTONIC_USEC"]) <= after


def test_a_status_text_cannot_inject_other_assignments(notify_socket: NotifySocket) -> None:
    Notifier(notify_socket.address).status("failed\nREADY=1\n  auth")
    assert notify_socket.messages() == [{"STATUS": "failed READY=1 auth"}]


def test_without_notify_socket_every_call_is_a_silent_no_op() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False


def test_a_missing_socket_is_logged_once_and_never_raises(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier(str(tmp_path / "absent"))
    with caplog.at_level(logging.INFO, logger="device.daemon.notify"):
        assert [n.watchdog() for _ in range(5)] == [False] * 5
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_sending_resumes_when_the_socket_appears_later(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    import socket

    path = tmp_path / "n"
    n = Notifier(str(path))
    assert not n.ready()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        with caplog.at_level(logging.INFO, logger="device.daemon.notify"):
            assert n.ready()
        assert sock.recv(100, socket.MSG_DONTWAIT) == b"READY=1"
        assert "notify recovered" in caplog.text
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(env: dict[str, str], expected) -> None:
    assert watchdog_interval(env, pid=4242) == expected
