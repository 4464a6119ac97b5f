"""The speaker's volume: scaled in software by the player, or set on an ALSA mixer control where one exists.

`audio.mixer` names an ALSA simple mixer control (`Speaker` on a 2-mic HAT, `PCM` on the Pi's jack, `Master` on a
sound server's ALSA device), or `auto` for the first control of `audio.mixer_device` that has a playback volume.
With a mixer the samples go out unscaled and the volume buttons move the control through alsa-utils' `amixer`
(`-M`: its mapped, perceptual scale, what alsamixer shows); the level the control had is kept at start-up, so the
volume a user set survives restarts and reloads as ALSA keeps it (and alsactl across reboots). Every path that sets
the volume (the buttons, the agent's `device.set_volume`) sets the player's, which hands it to the mixer. A
control that cannot be read at start is one warning saying which and how to list the card's controls, and the volume
stays in software; one that fails later is one warning until it works again.

The parsing is pure (`parse_level`, `playback_controls`); `Amixer` is the thin adapter around the command.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("voice-device.audio")

AMIXER_TIMEOUT_S = 3.0
_LEVEL = re.compile(r"^\s*[^:]+:\s+Playback\s+-?\d+\s+\[(\d+)%\]", re.MULTILINE)
_CONTROL = re.compile(r"^Simple mixer control '(.+)',(\d+)$")


class Handed(Protocol):
    """The player (`device.audio.player.Player`): its `volume` is what every path sets (buttons, the agent's
    `device.set_volume`, the session process's mirror); `hand_volume_to` makes it a mixer's."""

    def hand_volume_to(self, level: float, apply: Callable[[float], None]) -> None: ...


class MixerError(Exception):
    """amixer could not read or set the control: the sentence says which and what to try."""


def parse_level(text: str) -> float | None:
    """The playback level, 0.0 to 1.0, from `amixer sget` output: the mean of its channels' percentages
    (`Mono: Playback 32768 [50%] [on]`, `Front Left: Playback 52 [80%] [-7.50dB] [on]`); None when the control
    has no playback volume."""
    percents = [int(p) for p in _LEVEL.findall(text)]
    if not percents:
        return None
    return sum(percents) / len(percents) / 100.0


def playback_controls(text: str) -> list[str]:
    """The controls of `amixer scontents` output that have a playback volume (capability `pvolume`), in order;
    an index other than 0 is kept in amixer's own form (`'Speaker',1`)."""
    found: list[str] = []
    name: str | None = None
    for line in text.splitlines():
        if m := _CONTROL.match(line):
            name = m[1] if m[2] == "0" else f"'{m[1]}',{m[2]}"
        elif name is not None and line.strip().startswith("Capabilities:"):
            if "pvolume" in line.split(":", 1)[1].split():
                found.append(name)
            name = None
    return found


class Amixer:
    """`amixer -D DEVICE` run without blocking the loop, bounded by a timeout."""

    def __init__(self, device: str) -> None:
        self.device = device

    async def run(self, *args: str) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                "amixer", "-D", self.device, *args, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except FileNotFoundError as e:
            raise MixerError("amixer is not installed (Debian: apt install alsa-utils)") from e
        try:
            out, err = await asyncio.wait_for(proc.communicate(), AMIXER_TIMEOUT_S)
        except TimeoutError as e:
            proc.kill()
            await proc.wait()
            raise MixerError(f"amixer -D {self.device} {' '.join(args)} did not answer in {AMIXER_TIMEOUT_S:.0f} s") \
                from e
        if proc.returncode != 0:
            said = err.decode(errors="replace").strip().splitlines()
            raise MixerError(f"amixer -D {self.device} {' '.join(args)}: {said[-1] if said else 'failed'}")
        return out.decode(errors="replace")


class MixerVolume:
    """The speaker's volume on one mixer control. `apply(level)` returns at once (the player's volume setter
    calls it from the loop); the control is set in the background, the latest level winning when presses come
    faster than amixer answers. A failure is said once until the control works again."""

    def __init__(self, amixer: Amixer, control: str) -> None:
        self.amixer = amixer
        self.control = control
        self.applied: float | None = None  # the last level the control took
        self._wanted: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def apply(self, level: float) -> None:
        self._wanted = level
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._set())

    async def settled(self) -> None:
        """Until the control has taken the latest level asked for (tests, a clean stop)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _set(self) -> None:
        while self._wanted is not None:
            level, self._wanted = self._wanted, None
            try:
                out = await self.amixer.run("-M", "sset", self.control, f"{round(level * 100)}%")
            except MixerError as e:
                if not self._failing:
                    log.warning("volume not set on the mixer: %s", e)
                self._failing = True
                continue
            self._failing = False
            self.applied = parse_level(out)
            log.debug("mixer set control=%s level=%.2f", self.control, level)


async def attach_mixer(player: Handed, control: str | None, device: str) -> MixerVolume | None:
    """Hand the player's volume to `audio.mixer` = `control` on `audio.mixer_device` = `device`, keeping the
    level the control has (`auto` picks the first control with a playback volume). None, with one warning saying
    what to check, when there is no such control: the volume then stays in software."""
    if control is None:
        return None
    amixer = Amixer(device)
    try:
        if control == "auto":
            found = playback_controls(await amixer.run("scontents"))
            if not found:
                raise MixerError(f"ALSA device {device!r} has no playback volume control")
            control = found[0]
        level = parse_level(await amixer.run("-M", "sget", control))
        if level is None:
            raise MixerError(f"mixer control {control!r} on {device!r} has no playback volume")
    except MixerError as e:
        log.warning("speaker volume stays in software: %s (list the controls: amixer -D %s scontrols)", e, device)
        return None
    mixer = MixerVolume(amixer, control)
    mixer.applied = level
    player.hand_volume_to(level, mixer.apply)
    log.info("speaker volume on the ALSA mixer device=%s control=%s level=%.2f", device, control, level)
    return mixer
