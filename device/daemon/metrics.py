"""What a fleet operator watches, as Prometheus metrics: `DeviceMetrics` keeps them in a `prometheus_client` registry
of its own (never the library's global one) and renders them in the text format node_exporter's textfile collector
reads; the outlet `outlets/prometheus.py` says when and where.

It follows the status the hub gives (`record(change)`), not the daemon's objects. The status holds totals that can
start over within a run — a reload builds a new session supervisor and wake-word listener, whose counts restart
from 0 — while a Prometheus counter may only grow: each counter grows by what its total grew by since the status
before (`grown`), and a total that went down started over, so all of it is new. A daemon restart starts every counter
over, which Prometheus's `rate()`/`increase()` expect. The histograms take each latency measurement once, by the
running total beside its last value (`Latency.total`): the hub gives a change after every event, so a measurement is
never hidden behind the next one.

The metrics (all named `voice_device_…`; types and labels):
- `info` (info: version, mode); `state` (gauge, a state set: state, and reason — a FailureReason while failed, else
  ""); `state_since_timestamp_seconds` (gauge);
- counters by a label: `session_failures_total` (reason: FailureReason), `conversations_started_total` (trigger:
  Trigger), `conversations_ended_total` (reason: conversations.ENDED_BY);
- histograms: `press_to_listening_seconds`, `wake_to_listening_seconds`;
- counters: `sessions_total`, `reconnects_total`, `resumes_total`, `wake_detections_total`,
  `wake_own_voice_vetoes_total`, `wake_conversations_without_speech_total`, `session_processes_started_total`,
  `session_processes_lost_total`, `reloads_total`;
- prometheus_client's ProcessCollector for the daemon (`process_*`) and for the session process, the one serving the
  session or else the warm spare (`session_process_*`): resident_memory_bytes, cpu_seconds_total,
  start_time_seconds, virtual_memory_bytes, open_fds, max_fds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from device.core.vocabulary import DeviceState, FailureReason, Trigger
from device.daemon.conversations import ENDED_BY, OTHER
from device.daemon.outlets import StatusChange
from device.daemon.status import DeviceStatus, Latency

log = logging.getLogger("device.daemon.metrics")

PREFIX = "voice_device"
# trigger → agent listening: a token, a room join and an agent's dispatch, a few hundred ms to a few seconds
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0)
FAILURE_REASONS = frozenset(str(r) for r in FailureReason)

# Each counter's and histogram's `_created` series would double what a fleet stores for nothing: in the text format
# Prometheus keeps them as plain gauges. A switch of the library's, for the process: the daemon is its only user.
disable_created_metrics()  # type: ignore[no-untyped-call]  # (the library leaves it unannotated)


def grown(before: int, now: int) -> int:
    """How much a total grew between two statuses; one that went down started over (a reload), so all of it is new."""
    return now - before if now >= before else now


@dataclass(frozen=True)
class Total:
    """A plain counter and where the status keeps its total."""

    name: str
    doc: str
    of: Callable[[DeviceStatus], int]


@dataclass(frozen=True)
class Tally:
    """A counter by a label of a bounded vocabulary (`known`, written at 0 from the start so that `increase()` sees
    the first one), and where the status keeps its totals by that label."""

    name: str
    doc: str
    label: str
    known: tuple[str, ...]
    of: Callable[[DeviceStatus], Mapping[str, int]]


@dataclass(frozen=True)
class Timing:
    name: str
    doc: str
    of: Callable[[DeviceStatus], Latency]


TOTALS = (
    Total("sessions", "Sessions opened (a room joined for the device).", lambda s: s.session.metrics.sessions),
    Total("reconnects", "Connections to the LiveKit server that dropped during a session.",
          lambda s: s.session.metrics.reconnects),
    Total("resumes", "Dropped connections that came back during a conversation (it went on).",
          lambda s: s.conversations.resumed),
    Total("wake_detections", "Wake words heard and acted on.", lambda s: s.wake.detections if s.wake else 0),
    Total("wake_own_voice_vetoes", "Wake words dropped as the device's own voice (heard on its speaker).",
          lambda s: s.wake.ignored_own_voice if s.wake else 0),
    Total("wake_conversations_without_speech", "Wake-word conversations nobody spoke in: likely false wakes.",
          lambda s: s.conversations.wake_without_speech),
    Total("session_processes_started", "Session processes started (one per session, and the warm spare).",
          lambda s: s.session.process.started if s.session.process else 0),
    Total("session_processes_lost", "Session processes that exited while serving the device (crashed or hung).",
          lambda s: s.session.process.lost if s.session.process else 0),
    Total("reloads", "Configuration reloads (SIGHUP) that took effect.", lambda s: s.reloads),
)
TALLIES = (
    Tally("session_failures", "Session failures by reason (each with a sentence in the device's status).", "reason",
          tuple(str(r) for r in FailureReason), lambda s: s.session.metrics.failures),
    Tally("conversations_started", "Conversations started, by what asked for them.", "trigger",
          tuple(str(t) for t in Trigger), lambda s: s.conversations.started),
    Tally("conversations_ended", "Conversations ended, by why ('failed': given up on after a failure).", "reason",
          ENDED_BY, lambda s: s.conversations.ended),
)
TIMINGS = (
    Timing("press_to_listening_seconds", "A press that started a conversation to the agent listening.",
           lambda s: s.conversations.press_to_listening),
    Timing("wake_to_listening_seconds", "The wake word heard to the agent listening.",
           lambda s: s.conversations.wake_to_listening),
)


class DeviceMetrics:
    """The metrics of one daemon run: `record` each status change, `render` the text node_exporter reads."""

    def __init__(self, mode: str = "") -> None:
        self.registry = CollectorRegistry()
        self.mode = mode  # session.mode, for the info metric (a reload may change it)
        self._status = DeviceStatus()
        self._info = Info(PREFIX, "The device's software version and session mode.", registry=self.registry)
        self._totals = {t: Counter(f"{PREFIX}_{t.name}", t.doc, registry=self.registry) for t in TOTALS}
        self._tallies = {t: Counter(f"{PREFIX}_{t.name}", t.doc, [t.label], registry=self.registry) for t in TALLIES}
        for tally, counter in self._tallies.items():
            for value in tally.known:
                counter.labels(value)
        self._timings = {t: Histogram(f"{PREFIX}_{t.name}", t.doc, buckets=LATENCY_BUCKETS_S, registry=self.registry)
                         for t in TIMINGS}
        self.registry.register(StateCollector(lambda: self._status))
        ProcessCollector(namespace=PREFIX, registry=self.registry)
        # the session process, if any (`session.process: warm | on_demand`)
        ProcessCollector(namespace=f"{PREFIX}_session", pid=self._session_pid, registry=self.registry)
        self._info.info({"version": "", "mode": mode})

    def record(self, change: StatusChange) -> None:
        before, now = change.before, change.status
        self._status = now
        self._info.info({"version": now.version, "mode": self.mode})
        for total, counter in self._totals.items():
            if n := grown(total.of(before), total.of(now)):
                counter.inc(n)
        for tally, labelled in self._tallies.items():
            was = tally.of(before)
            for value, count in tally.of(now).items():
                if n := grown(was.get(value, 0), count):
                    labelled.labels(value if value in tally.known else OTHER).inc(n)
        for timing, histogram in self._timings.items():
            self._observe(timing, histogram, timing.of(before), timing.of(now))

    @staticmethod
    def _observe(timing: Timing, histogram: Histogram, before: Latency, now: Latency) -> None:
        new = grown(before.total, now.total)
        if not new or now.last_ms is None:
            return
        histogram.observe(now.last_ms / 1000.0)
        if new > 1:  # the hub gives a change after every event: this is a bug, said rather than hidden
            log.warning("metric %s: %d measurements arrived in one status change; only the last was observed",
                        timing.name, new)

    def _session_pid(self) -> int | str:
        """The session process: the one serving the session, else the warm spare waiting for the next."""
        process = self._status.session.process
        pid = None if process is None else process.pid or process.spare_pid
        return "none" if pid is None else pid  # /proc/none: no series

    def render(self) -> bytes:
        """The text exposition format (what node_exporter's textfile collector parses)."""
        return generate_latest(self.registry)


class StateCollector(Collector):
    """`voice_device_state`: a state set, one series per state the device can be in, 1 for the current one; the
    failure's reason as a label while failed (FailureReason: a bounded vocabulary; a failed reload's text is not)."""

    def __init__(self, status: Callable[[], DeviceStatus]) -> None:
        self._status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self._status()
        reason = status.reason if status.state == DeviceState.FAILED and status.reason in FAILURE_REASONS else ""
        family = GaugeMetricFamily(f"{PREFIX}_state", "The device's state (1: the current one), with the reason "
                                   "while failed.", labels=["state", "reason"])
        for state in DeviceState:
            current = state == status.state
            family.add_metric([str(state), reason if current else ""], 1.0 if current else 0.0)
        yield family
        yield GaugeMetricFamily(f"{PREFIX}_state_since_timestamp_seconds", "When the state (or its reason) last "
                                "changed, in seconds since the epoch.", value=status.since)
