"""Who holds an ALSA device: the kernel's own record (/proc/asound/cardC/pcmDx/subN/status, `owner_pid`).

On plain ALSA a `hw:` device takes one process at a time, and PortAudio then reports a busy device as
unavailable or lists it with no channels. `holders("… (hw:1,0)", "input")` names the process that has it, so the
daemon's one line says what to stop. Under the unit's ProtectProc=invisible another user's process shows as a
number only.
"""

from __future__ import annotations

import re
from pathlib import Path

_HW = re.compile(r"hw:(?:CARD=)?(\d+),(?:DEV=)?(\d+)")


def holders(device: str, direction: str, proc: Path = Path("/proc")) -> list[str]:
    """`process 1234 (arecord)` for each process that has `device`'s `direction` ('input'/'output') open;
    [] when the name is not a `hw:C,D` device or nothing holds it."""
    m = _HW.search(device)
    if m is None:
        return []
    card, dev = m.groups()
    stream = proc / "asound" / f"card{card}" / f"pcm{dev}{'c' if direction == 'input' else 'p'}"
    found = []
    for status in sorted(stream.glob("sub*/status")):
        try:
            owner = re.search(r"owner_pid\s*:\s*(\d+)", status.read_text())
        except OSError:
            continue
        if owner:
            found.append(_describe(int(owner.group(1)), proc))
    return found


def _describe(pid: int, proc: Path) -> str:
    try:
        return f"process {pid} ({(proc / str(pid) / 'comm').read_text().strip()})"
    except OSError:
        return f"process {pid}"


def busy_sentence(device: str, direction: str, proc: Path = Path("/proc")) -> str | None:
    """`held by process 1234 (arecord); stop it or share the card (scripts/install.sh --alsa-card)`, or None."""
    held = holders(device, direction, proc)
    if not held:
        return None
    return (f"held by {', '.join(held)}; stop it, or share the card through dsnoop/dmix "
            "(scripts/install.sh --alsa-card CARD)")
