"""The uplink's routing, read as its table: facts in, the next step out (device/session/uplink/routing.py)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from device.session.uplink.routing import Facts, Route, Step, decide

UP = Facts(Route.BUFFER, attached=True, sid=True)  # published, no agent yet
A = "agent-1"

TABLE = [
    # what the room has told the uplink                                              the next step
    (Facts(Route.BUFFER, sid=True, agent=A),                                            None),  # not attached
    (UP,                                                                                None),  # waiting for an agent
    (replace(UP, agent=A),                                                              Step.OPEN_STREAM),
    (replace(UP, agent=A, preconnect=False),                                            None),  # pre-connect off
    (replace(UP, agent=A, sid=False),                                                   None),  # no SID: no trackId
    (replace(UP, route=Route.STREAM, agent=A, stream_agent=A),                          None),  # streaming, waiting
    (replace(UP, route=Route.STREAM, agent=A, stream_agent=A, subscribed=True),         Step.GO_LIVE),
    (replace(UP, route=Route.STREAM, agent=A, stream_agent=A, expired=True),            Step.GO_LIVE_LATE),
    # push-to-talk: the agent's input is off until it has answered start_turn — the stream waits for the answer
    (replace(UP, route=Route.STREAM, agent=A, stream_agent=A, subscribed=True, turn_pending=True),  None),
    (replace(UP, route=Route.STREAM, agent=A, stream_agent=A, subscribed=True, turn_pending=True,
             expired=True),                                                             Step.GO_LIVE_LATE),  # bounded
    (replace(UP, route=Route.STREAM, agent="agent-2", stream_agent=A, turn_pending=True), Step.ABANDON),
    (replace(UP, agent=A, turn_pending=True),                                           Step.OPEN_STREAM),  # opens
    (replace(UP, route=Route.LIVE, agent=A, subscribed=True, turn_pending=True),        None),  # live stays live
    (replace(UP, route=Route.STREAM, agent=None, stream_agent=A, subscribed=True),      Step.ABANDON),
    (replace(UP, route=Route.STREAM, agent="agent-2", stream_agent=A),                  Step.ABANDON),
    (replace(UP, route=Route.LIVE, agent=A, subscribed=True),                           None),  # live: settled
    (replace(UP, route=Route.LIVE, agent=A, reconnecting=True),                         Step.HOLD),
    (replace(UP, route=Route.STREAM, agent=A, stream_agent=A, reconnecting=True),       Step.HOLD),
    (replace(UP, agent=A, reconnecting=True, held=True),                                None),  # holding
    (replace(UP, agent=A, held=True, subscribed=True),                                  Step.RESUME_LIVE),
    (replace(UP, agent=A, held=True, subscribed=True, republished=True),                Step.OPEN_STREAM),
    (replace(UP, route=Route.LIVE, agent=A, republished=True),                          Step.REBUFFER),
    (replace(UP, route=Route.LIVE, republished=True, reconnecting=True),                Step.HOLD),
    (replace(UP, route=Route.DISCARD, agent=A, preconnect=False),                       None),
    # pre-connect off: back on the live track after any reconnect, subscribed again or not
    (replace(UP, route=Route.LIVE, agent=A, preconnect=False, reconnecting=True),       Step.HOLD),
    (replace(UP, agent=A, preconnect=False, held=True),                                 Step.LIVE_AGAIN),
    (replace(UP, agent=A, preconnect=False, held=True, republished=True),               Step.LIVE_AGAIN),
    (replace(UP, route=Route.LIVE, agent=A, preconnect=False, republished=True),        Step.LIVE_AGAIN),
    (replace(UP, agent=A, preconnect=False, held=True, reconnecting=True),              None),  # holding
    (replace(UP, route=Route.LIVE, agent=A, preconnect=False, subscribed=True),         None),  # live: settled
]  # fmt: skip


@pytest.mark.parametrize(("facts", "step"), TABLE)
def test_routing_table(facts: Facts, step: Step | None) -> None:
    assert decide(facts) == step


def test_every_step_appears_in_the_table() -> None:
    assert {step for _, step in TABLE} == {*Step, None}


def test_nothing_is_sent_while_reconnecting_except_holding_what_goes_out() -> None:
    # a resume is under way: the only step is to stop sending (HOLD); opening or going live waits
    for route, agent, subscribed, held, republished in itertools.product(
            Route, (None, A), (False, True), (False, True), (False, True)):
        facts = replace(UP, route=route, agent=agent, stream_agent=agent, subscribed=subscribed, held=held,
                        republished=republished, reconnecting=True)
        expected = Step.HOLD if route in (Route.LIVE, Route.STREAM) else None
        assert decide(facts) == expected, facts
