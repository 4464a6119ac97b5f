"""The versions the stub SFU speaks, and the loud check that the installed SDK still matches them.

The stub imitates what the `livekit` 1.2.1 wheel's Rust core expects on the wire. A different SDK may send a
different signalling protocol number or expect different messages; rather than letting the wire tests fail in
obscure ways, the stub refuses to run (and refuses a join announcing another protocol) with one sentence saying
what to do.
"""

from __future__ import annotations

from importlib import metadata

# Pinned in pyproject's `test` extra; the stub was written against exactly these.
PINNED: dict[str, str] = {"livekit": "1.2.1", "livekit-protocol": "1.1.29", "aiortc": "1.16.0"}

# `ClientInfo.protocol` that livekit 1.2.1 announces in its JoinRequest (observed on the wire).
SIGNAL_PROTOCOL = 18


class VersionMismatch(RuntimeError):
    """The installed packages or the connecting SDK speak another version than the stub."""


def installed_versions(packages: tuple[str, ...] = tuple(PINNED)) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def check_installed(installed: dict[str, str | None] | None = None) -> None:
    """Raise VersionMismatch unless every pinned package is installed at its pinned version."""
    found = installed_versions() if installed is None else installed
    wrong = [f"{name} {found.get(name) or 'missing'} (stub speaks {want})"
             for name, want in PINNED.items() if found.get(name) != want]
    if wrong:
        raise VersionMismatch(
            "the stub SFU was written for other package versions: " + ", ".join(wrong)
            + "; install the test extra's pins (pip install -e '.[test]') or update tests/stubsfu for the new SDK"
        )


def check_client_protocol(protocol: int) -> None:
    """Raise VersionMismatch when a JoinRequest announces a signalling protocol the stub does not speak."""
    if protocol != SIGNAL_PROTOCOL:
        raise VersionMismatch(
            f"the connecting SDK speaks signalling protocol {protocol} but the stub SFU speaks {SIGNAL_PROTOCOL}; "
            "pin livekit to the test extra's version or update tests/stubsfu for the new SDK"
        )
