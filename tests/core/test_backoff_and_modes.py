"""Layer 0: the one backoff, and the modes table every layer consults."""

from __future__ import annotations

import dataclasses
import random

from device.config.schema import SessionConfig
from device.core.backoff import Backoff
from device.core.modes import GESTURE_ACTIONS, GESTURES, MODES, get_mode


def test_backoff_without_jitter_doubles_from_the_base_to_the_cap():
    b = Backoff(0.25, 2.0, jitter=False)
    assert b.ceiling == 0.0
    assert [b.next_delay() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    b.reset()
    assert b.failures == 0 and b.next_delay() == 0.25


def test_backoff_with_jitter_stays_under_the_same_ceiling():
    b = Backoff(1.0, 8.0, rng=random.Random(3))
    for _ in range(10):
        delay = b.next_delay()
        assert delay is not None and 0.0 <= delay <= b.ceiling <= 8.0


def test_every_mode_maps_every_gesture_to_a_known_action():
    for name, spec in MODES.items():
        assert spec.name == name
        assert set(spec.gestures) == set(GESTURES), name
        assert set(spec.gestures.values()) <= set(GESTURE_ACTIONS), name


def test_the_config_accepts_exactly_the_modes_of_the_table():
    field = {f.name: f for f in dataclasses.fields(SessionConfig)}["mode"]
    assert tuple(field.metadata["choices"]) == tuple(MODES)
    assert SessionConfig(mode="toggle").profile is get_mode("toggle")


def test_an_unknown_mode_is_a_sentence_naming_the_choices():
    try:
        get_mode("telepathy")
    except ValueError as e:
        assert "push_to_talk" in str(e) and "telepathy" in str(e)
    else:
        raise AssertionError("an unknown mode was accepted")
