"""`metrics`: the device's Prometheus metrics (`device/daemon/metrics.py`) in a file node_exporter's textfile
collector reads — the convention on Pi fleets: no listening port on the device; the node_exporter already scraped
carries them.

Written on every change the hub gives and every `metrics.interval_s` besides (the process memory and CPU move without
a change of status), each time replaced atomically: a hidden sibling, world-readable, renamed over it, so
node_exporter never reads half a file. A write that fails (the directory missing, read-only, not ours to write) is
logged once with what to do, and the first one that succeeds again says so; the daemon goes on either way. The
metrics of a run outlive a reload: the outlet a new configuration builds takes up the `DeviceMetrics` of the one
before when the file is the same (`RUN`), so its counters keep growing.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from device.config import Config
from device.daemon.outlets import StatusChange, outlet
from device.daemon.status import replace_file

if TYPE_CHECKING:
    from device.daemon.metrics import DeviceMetrics

log = logging.getLogger("device.daemon.metrics")


class Cancellable(Protocol):
    def cancel(self) -> None: ...


Schedule = Callable[[float, Callable[[], None]], Cancellable]  # (delay, callback) → its handle: loop.call_later

RUN: dict[str, DeviceMetrics] = {}  # textfile → its metrics, for the daemon's run (kept across reloads)


class PrometheusTextfile:
    def __init__(self, path: str, metrics: DeviceMetrics, interval_s: float, schedule: Schedule | None = None) -> None:
        self.path = path
        self.metrics = metrics
        self.interval_s = interval_s
        self._schedule = schedule  # None: the running loop's call_later, found at the first change
        self._timer: Cancellable | None = None
        self._closed = False
        self._failing = False

    def publish(self, change: StatusChange) -> None:
        self.metrics.record(change)
        self.write()
        self._arm()

    def write(self) -> None:
        try:
            replace_file(self.path, self.metrics.render())
        except OSError as e:
            if not self._failing:
                log.warning("metrics not written path=%s: %s (further failures are not logged)", self.path,
                            why_not_written(e, os.path.dirname(self.path)))
            self._failing = True
        else:
            if self._failing:
                log.info("metrics written again path=%s", self.path)
            self._failing = False

    def close(self) -> None:
        """Stop the periodic writes; the file stays (node_exporter's node_textfile_mtime_seconds shows its age)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        if self._timer is not None or self._closed:
            return
        schedule = self._schedule or _running_loop_schedule()
        if schedule is not None:
            self._timer = schedule(self.interval_s, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.write()
        self._arm()


def _running_loop_schedule() -> Schedule | None:
    try:
        return asyncio.get_running_loop().call_later
    except RuntimeError:  # no loop (a status given outside the daemon): no periodic writes
        return None


def why_not_written(e: OSError, directory: str) -> str:
    """The sentence for a failed write: what went wrong and what to do."""
    if e.errno == errno.ENOENT:
        return (f"the directory {directory} does not exist; install prometheus-node-exporter (which creates "
                "/var/lib/prometheus/node-exporter) or set metrics.textfile to a file in node_exporter's "
                "--collector.textfile.directory")
    if e.errno in (errno.EACCES, errno.EPERM):
        return (f"this user may not write in {directory} (root's, on Debian); give the daemon's group the right "
                f"once: `chgrp voice-device {directory} && chmod g+w {directory}`")
    if e.errno == errno.EROFS:
        return (f"{directory} is read-only to the daemon; the systemd unit lets it write only in "
                "/var/lib/prometheus/node-exporter (ReadWritePaths=): add another in a drop-in "
                "(`systemctl edit voice-device`)")
    return f"{e.strerror or e}"


@outlet("metrics")
def prometheus_textfile(config: Config) -> PrometheusTextfile | None:
    if config.metrics is None:
        return None
    from device.daemon.metrics import DeviceMetrics  # prometheus_client: imported only by a device that exports

    path = config.metrics.textfile
    metrics = RUN.get(path)
    if metrics is None:
        metrics = RUN[path] = DeviceMetrics()
    metrics.mode = config.session.mode
    return PrometheusTextfile(path, metrics, config.metrics.interval_s)
