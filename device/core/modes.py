"""The session modes (`session.mode`): everything that differs between the profiles, in one table.

A mode is data the layers consult — the device machine reads its gesture map, the session policy its timers
and retry budget, the supervisor its turns, the daemon whether to start a session at boot — so a new mode is
one entry here (plus its tests), not a branch in five files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# What a button gesture can mean (`controls.gestures` overrides a mode's map with these).
GESTURES = ("press", "release", "long_press", "double_press")
GESTURE_ACTIONS = (
    "start_turn",
    "end_turn",
    "cancel_turn",
    "start_session",
    "end_session",
    "toggle_session",
    "toggle_mute",
    "mute_or_start",
    "converse",
    "none",
)


@dataclass(frozen=True)
class Mode:
    name: str
    gestures: Mapping[str, str]  # gesture → action, for the main button
    turns: bool = False  # push-to-talk turns: the agent's start_turn / end_turn RPCs, a turn held while pressed
    starts_at_boot: bool = False  # the daemon asks for a session as soon as it is up
    keeps_session: bool = False  # failures retried without a budget and a lost session process replaced: nobody
    #                               is there to press a button (an explicit end still ends it: see the policy)
    idle_timeout: bool = True  # session.idle_timeout_s ends a session whose agent waits for speech
    max_length: bool = True  # session.max_session_s caps a session
    wake_word: bool = False  # the daemon listens for `wake_word.models` on the device (not while muted); a
    #                           detection starts a conversation, or interrupts the agent while it speaks
    follow_up: bool = False  # the idle timer is the follow-up window (`wake_word.follow_up_s`, speech judged by a
    #                           voice activity detector, not the energy gate); the agent marking the user away ends it


def _gestures(press: str, release: str = "none", long_press: str = "none", double_press: str = "none"
              ) -> Mapping[str, str]:
    return MappingProxyType(
        {"press": press, "release": release, "long_press": long_press, "double_press": double_press}
    )


MODES: Mapping[str, Mode] = MappingProxyType({
    # kiosk: hold to talk; a press while the agent speaks is a barge-in; a long press ends the session.
    "push_to_talk": Mode("push_to_talk", _gestures("start_turn", "end_turn", "end_session"), turns=True),
    # a permanent room: up from boot and through failures; the button is a mute switch, and starts the session
    # again after an explicit end (`ctl end`, the agent ending it).
    "always_on": Mode("always_on", _gestures("mute_or_start"), starts_at_boot=True, keeps_session=True,
                      idle_timeout=False, max_length=False),
    # appliance: press to start, press again to end.
    "toggle": Mode("toggle", _gestures("toggle_session")),
    # smart speaker: the wake word heard on the device starts a conversation; it ends when nobody speaks in the
    # follow-up window after the agent's answer. A press starts one without the wake word (and stops the agent
    # while it speaks); a long press ends it; a double press (with controls.button.double_press_s set) mutes.
    "wake_word": Mode("wake_word", _gestures("converse", long_press="end_session", double_press="toggle_mute"),
                      wake_word=True, follow_up=True),
})


def get_mode(name: str) -> Mode:
    """The mode called `name`; ValueError naming the choices otherwise."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown session.mode {name!r}; expected one of {', '.join(MODES)}") from None
