"""The gesture recogniser as a specification: edges and times in, gestures out, timers asked for explicitly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from device.config.schema import ButtonConfig
from device.controls.gestures import GestureRecognizer
from device.core.vocabulary import DoublePressed, LongPressed, Pressed, Released


def run(rec: GestureRecognizer, script: list[tuple[float, bool | None]]) -> list[object]:
    """Feed (time, edge) pairs; an edge of None means 'the shell's timer fired at this time'."""
    out: list[object] = []
    for t, edge in script:
        out += rec.tick(t) if edge is None else rec.edge(edge, t)
    return out


def test_a_clean_press_is_reported_at_the_edge_without_waiting() -> None:
    rec = GestureRecognizer(bounce_s=0.03, hold_s=1.0)
    assert rec.edge(True, 10.0) == [Pressed()]
    assert rec.deadline == 11.0  # the long-press timer
    assert rec.edge(False, 10.2) == [Released()]
    assert rec.deadline is None


def test_hundred_bounces_in_fifty_ms_make_one_press() -> None:
    rec = GestureRecognizer(bounce_s=0.03, hold_s=1.0)
    script = [(10.0 + i * 0.0005, i % 2 == 0) for i in range(100)]  # 100 edges, the last one a release
    script.append((10.0495, True))  # ...and it settles pressed
    out = run(rec, script)
    out += rec.tick(10.2)
    assert out == [Pressed()]
    assert rec.is_pressed
    out = run(rec, [(10.5, False), (10.6, None)])
    assert out == [Released()]


def test_chatter_on_release_makes_one_release_at_the_first_edge() -> None:
    rec = GestureRecognizer(bounce_s=0.03, hold_s=5.0)
    rec.edge(True, 0.0)
    script = [(1.0 + i * 0.001, i % 2 == 1) for i in range(41)]  # starts with a release, ends released
    assert run(rec, script) == [Released()]
    assert rec.deadline == 1.0 + 40 * 0.001 + 0.03
    assert rec.tick(1.2) == []
    assert not rec.is_pressed


def test_a_tap_whose_chatter_ends_released_is_one_press_and_one_release() -> None:
    rec = GestureRecognizer(bounce_s=0.03, hold_s=5.0)
    script = [(i * 0.001, i % 2 == 0) for i in range(20)]  # starts pressed, ends released
    assert run(rec, script) == [Pressed()]
    assert rec.tick(0.019 + 0.03) == [Released()]


def test_a_glitch_shorter_than_bounce_still_resolves_to_released() -> None:
    rec = GestureRecognizer(bounce_s=0.03)
    assert rec.edge(True, 0.0) == [Pressed()]
    assert rec.edge(False, 0.000001) == []
    assert rec.tick(0.05) == [Released()]


def test_holding_reports_one_long_press_then_the_release() -> None:
    rec = GestureRecognizer(hold_s=1.5)
    assert run(rec, [(0.0, True), (1.0, None)]) == [Pressed()]
    assert rec.tick(1.5) == [LongPressed()]
    assert rec.tick(9.0) == []
    assert rec.edge(False, 9.5) == [Released()]


def test_release_before_hold_time_cancels_the_long_press() -> None:
    rec = GestureRecognizer(hold_s=1.0)
    assert run(rec, [(0.0, True), (0.5, False), (2.0, None)]) == [Pressed(), Released()]


def test_double_press_within_the_window_is_one_gesture_without_the_single_press() -> None:
    rec = GestureRecognizer(hold_s=2.0, double_press_s=0.4)
    out = run(rec, [(0.0, True), (0.1, False), (0.3, True)])
    assert out == [DoublePressed()]
    assert run(rec, [(0.4, False), (1.0, None)]) == [Released()]


def test_with_double_press_on_a_single_press_is_reported_when_the_window_closes() -> None:
    rec = GestureRecognizer(hold_s=2.0, double_press_s=0.4)
    assert run(rec, [(0.0, True), (0.1, False)]) == []
    assert rec.deadline == 0.4
    assert rec.tick(0.4) == [Pressed(), Released()]


def test_with_double_press_on_a_hold_is_reported_as_pressed_when_the_window_closes() -> None:
    rec = GestureRecognizer(hold_s=1.0, double_press_s=0.4)
    assert rec.edge(True, 0.0) == []
    assert rec.tick(0.4) == [Pressed()]
    assert rec.tick(1.0) == [LongPressed()]
    assert rec.edge(False, 3.0) == [Released()]


def test_a_second_press_after_the_window_is_two_single_presses() -> None:
    rec = GestureRecognizer(hold_s=2.0, double_press_s=0.3)
    out = run(rec, [(0.0, True), (0.1, False), (0.5, True), (0.6, False), (1.0, None)])
    assert out == [Pressed(), Released(), Pressed(), Released()]


def test_late_ticks_report_everything_due_in_time_order() -> None:
    rec = GestureRecognizer(hold_s=0.5, double_press_s=0.3)
    rec.edge(True, 0.0)
    assert rec.tick(5.0) == [Pressed(), LongPressed()]


def test_from_config_converts_milliseconds() -> None:
    rec = GestureRecognizer.from_config("mute", ButtonConfig(bounce_ms=50, hold_s=2.0, double_press_s=0.25))
    assert (rec.button, rec.bounce_s, rec.hold_s, rec.double_press_s) == ("mute", 0.05, 2.0, 0.25)
    assert rec.edge(True, 0.0) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0001, max_value=0.2), min_size=1, max_size=60),
       st.sampled_from([0.0, 0.3]))
def test_gestures_always_alternate_press_and_release_whatever_the_chatter(gaps: list[float], double: float) -> None:
    rec = GestureRecognizer(bounce_s=0.03, hold_s=0.5, double_press_s=double)
    t, level, out = 0.0, False, []
    for gap in gaps:
        t += gap
        level = not level
        out += rec.edge(level, t)
    if level:
        out += rec.edge(False, t + 0.01)
    out += rec.tick(t + 10.0)
    downs = [type(g) for g in out if not isinstance(g, LongPressed)]
    assert downs[::2] == [d for d in downs[::2] if d in (Pressed, DoublePressed)] and len(downs) % 2 == 0
    assert all(d is Released for d in downs[1::2])
    assert rec.deadline is None and not rec.is_pressed
