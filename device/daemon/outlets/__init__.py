"""Status outlets: where the daemon's `DeviceStatus` goes, on every change that matters.

An outlet is anything with `publish(change)` and `close()` (`StatusOutlet`). The hub (`StatusOutlets`, hub.py)
gives every outlet each `StatusChange` — the status now and the one the outlets were given before — when the state,
its reason, mute, the volume, the transcripts or the session and conversation counts moved; each outlet renders
what it shows. Built in: systemd's STATUS= (systemd.py) and the control socket's state messages
(control_socket.py), which the daemon attaches itself, and the status file (status_file.py).

A new publisher (MQTT, Prometheus, ...) is one new file in this folder — its `StatusOutlet` and a factory registered
with `@outlet("NAME")` that builds it from the configuration, or returns None when its section is absent — plus
that section in `device/config/schema.py`. `configured` imports every module of this folder, so nothing else lists
the file; the daemon builds the configured outlets at start-up and again on each reload (closing the old ones).
What leaves the device goes as `status_json` renders it (secrets redacted as in the log), and anything kept or sent
beyond the device leaves the transcripts out (`without_transcripts`), as the status file does.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from device.config import Config
from device.daemon.status import DeviceStatus


@dataclass(frozen=True)
class StatusChange:
    status: DeviceStatus  # now
    before: DeviceStatus  # what the outlets were given last

    @property
    def state_changed(self) -> bool:
        """The state or its reason moved (what systemd, the socket's state messages and the status file follow)."""
        return (self.status.state, self.status.reason) != (self.before.state, self.before.reason)


class StatusOutlet(Protocol):
    def publish(self, change: StatusChange) -> None:
        """Show `change.status`; may raise (the hub logs it and goes on), must not block."""

    def close(self) -> None: ...


OutletFactory = Callable[[Config], StatusOutlet | None]

# name (that of its config section) → the factory; filled by `@outlet` as the modules of this folder are imported
OUTLETS: dict[str, OutletFactory] = {}


def outlet(name: str) -> Callable[[OutletFactory], OutletFactory]:
    """Register a factory under `name`: `configured` calls it with each configuration the daemon runs."""

    def register(factory: OutletFactory) -> OutletFactory:
        OUTLETS[name] = factory
        return factory

    return register


def configured(config: Config) -> list[StatusOutlet]:
    """The registered outlets `config` asks for, in the order they were registered."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    made = (factory(config) for factory in OUTLETS.values())
    return [o for o in made if o is not None]
