"""The Prometheus textfile outlet (`metrics:`): off unless configured; each metric follows a sequence of statuses as
the hub gives them, counters only ever growing (a reload's totals that start over included), each latency observed
once; the file replaced atomically and world-readable; a failed write logged once with what to do."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest
from prometheus_client.parser import text_string_to_metric_families

from device.config import ConfigError, load_config_text
from device.config.schema import Config, MetricsConfig
from device.core.vocabulary import AgentStateChanged, StartSession, Trigger
from device.daemon.conversations import ConversationStats
from device.daemon.metrics import DeviceMetrics
from device.daemon.outlets import StatusChange, configured
from device.daemon.outlets.hub import StatusOutlets
from device.daemon.outlets.prometheus import PrometheusTextfile, why_not_written
from device.daemon.status import ConversationStatus, DeviceStatus, Latency, WakeStatus
from device.session.status import ProcessStatus, SessionMetrics, SessionStatus

LOCAL = "livekit:\n  token_source: local\n  url: ws://127.0.0.1:7880\n  api_key: k\n  api_secret: s\n"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(path: Path) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(path.read_text()) for s in family.samples}


def value(got: Samples, name: str, **labels: str) -> float:
    return got[(name, frozenset(labels.items()))]


class Timers:
    """A fake `call_later`: what was armed, fired by hand."""

    def __init__(self) -> None:
        self.armed: list[tuple[float, object]] = []
        self.cancelled = 0

    def __call__(self, delay: float, callback: object) -> Timers:
        self.armed.append((delay, callback))
        return self

    def cancel(self) -> None:
        self.cancelled += 1

    def fire(self) -> None:
        _, callback = self.armed.pop(0)
        assert callable(callback)
        callback()


class Feed:
    """An outlet given each status of a sequence with the one before, as the hub does."""

    def __init__(self, path: Path, mode: str = "push_to_talk") -> None:
        self.path = path
        self.timers = Timers()
        self.outlet = PrometheusTextfile(str(path), DeviceMetrics(mode), 5.0, schedule=self.timers)
        self.before = DeviceStatus()

    def __call__(self, status: DeviceStatus) -> Samples:
        self.outlet.publish(StatusChange(status, self.before))
        self.before = status
        return samples(self.path)


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[Feed]:
    f = Feed(tmp_path / "voice-device.prom")
    yield f
    f.outlet.close()


def pressed(total: int, last_ms: int) -> ConversationStatus:
    return ConversationStatus(press_to_listening=Latency(count=min(total, 32), last_ms=last_ms, total=total))


# ---- configuration ------------------------------------------------------------------------------------------------


def test_no_metrics_are_written_unless_the_section_is_there() -> None:
    assert Config().metrics is None
    assert not [o for o in configured(Config()) if isinstance(o, PrometheusTextfile)]


def test_the_section_turns_the_outlet_on_with_debians_textfile_directory_by_default(tmp_path: Path) -> None:
    config = load_config_text(LOCAL + "metrics: {}\n")
    assert config.metrics == MetricsConfig()
    assert config.metrics.textfile == "/var/lib/prometheus/node-exporter/voice-device.prom"
    path = tmp_path / "vd.prom"
    outlets = configured(load_config_text(LOCAL + f"metrics:\n  textfile: {path}\n  interval_s: 2\n"))
    (outlet,) = [o for o in outlets if isinstance(o, PrometheusTextfile)]
    assert (outlet.path, outlet.interval_s) == (str(path), 2.0)
    for o in outlets:
        o.close()


@pytest.mark.parametrize(("text", "key", "says"), [
    ("metrics:\n  textfile: /var/lib/prometheus/node-exporter/voice-device.txt\n", "metrics.textfile", "ends in .prom"),
    ("metrics:\n  textfile: voice-device.prom\n", "metrics.textfile", "absolute path"),
    ("metrics:\n  interval_s: 0.2\n", "metrics.interval_s", "at least 1.0"),
    ("metrics:\n  textfle: /tmp/x.prom\n", "metrics.textfle", "did you mean 'textfile'"),
])
def test_a_bad_metrics_setting_is_named_with_what_to_write(text: str, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config_text(text)
    assert key in str(e.value) and says in str(e.value)


# ---- the metrics ---------------------------------------------------------------------------------------------------


def test_the_state_is_a_state_set_with_the_failure_reason_only_while_failed(feed: Feed) -> None:
    got = feed(DeviceStatus("idle", version="9.8.7", since=1700000000.0))
    assert value(got, "voice_device_state", state="idle", reason="") == 1
    assert value(got, "voice_device_state", state="failed", reason="") == 0
    assert value(got, "voice_device_state_since_timestamp_seconds") == 1700000000.0
    assert value(got, "voice_device_info", version="9.8.7", mode="push_to_talk") == 1
    got = feed(DeviceStatus("failed", "auth", version="9.8.7"))
    assert value(got, "voice_device_state", state="failed", reason="auth") == 1
    assert value(got, "voice_device_state", state="idle", reason="") == 0
    assert sum(v for (name, _), v in got.items() if name == "voice_device_state") == 1
    # a failed reload's reason is a sentence, not a vocabulary: never a label
    got = feed(DeviceStatus("failed", "reload failed, old configuration kept: config.yaml:3: bad"))
    assert value(got, "voice_device_state", state="failed", reason="") == 1


def test_counters_grow_by_what_the_status_grew_and_a_total_that_started_over_is_all_new(feed: Feed) -> None:
    def status(failures: dict[str, int], detections: int, started: int) -> DeviceStatus:
        return DeviceStatus(
            session=SessionStatus(metrics=SessionMetrics(sessions=sum(failures.values()), reconnects=detections,
                                                         failures=MappingProxyType(failures)),
                                  process=ProcessStatus(None, started)),
            wake=WakeStatus(detections=detections, ignored_own_voice=detections // 2),
            conversations=ConversationStatus(started=MappingProxyType({"wake_word": detections}),
                                             ended=MappingProxyType({"follow-up-over": detections}), resumed=1))

    got = feed(status({"auth": 1}, 2, 1))
    assert value(got, "voice_device_session_failures_total", reason="auth") == 1
    assert value(got, "voice_device_session_failures_total", reason="unreachable") == 0  # there from the start
    feed(status({"auth": 2, "agent-left": 1}, 4, 2))
    got = feed(status({"auth": 1}, 1, 1))  # a reload: a new supervisor and wake listener count from 0 again
    assert value(got, "voice_device_session_failures_total", reason="auth") == 3
    assert value(got, "voice_device_session_failures_total", reason="agent-left") == 1
    assert value(got, "voice_device_wake_detections_total") == 5
    assert value(got, "voice_device_wake_own_voice_vetoes_total") == 2  # 1, 2, then 0 after the reload
    assert value(got, "voice_device_reconnects_total") == 5
    assert value(got, "voice_device_sessions_total") == 4
    assert value(got, "voice_device_session_processes_started_total") == 3
    assert value(got, "voice_device_conversations_started_total", trigger="wake_word") == 5  # daemon-wide in life
    assert value(got, "voice_device_conversations_started_total", trigger="button") == 0
    assert value(got, "voice_device_conversations_ended_total", reason="follow-up-over") == 5
    assert value(got, "voice_device_resumes_total") == 1
    got = feed(replace(feed.before, wake=None))  # a mode without the wake word: nothing taken back
    assert value(got, "voice_device_wake_detections_total") == 5


def test_each_latency_is_observed_once_even_when_two_in_a_row_are_equal(feed: Feed) -> None:
    feed(DeviceStatus(conversations=pressed(1, 250)))
    feed(DeviceStatus("listening", conversations=pressed(1, 250)))  # another change, no new measurement
    got = feed(DeviceStatus(conversations=pressed(2, 250)))  # a second press, the same 250 ms
    assert value(got, "voice_device_press_to_listening_seconds_count") == 2
    assert value(got, "voice_device_press_to_listening_seconds_sum") == pytest.approx(0.5)
    assert value(got, "voice_device_press_to_listening_seconds_bucket", le="0.25") == 2
    assert value(got, "voice_device_press_to_listening_seconds_bucket", le="0.1") == 0
    assert value(got, "voice_device_wake_to_listening_seconds_count") == 0


def test_through_the_hub_every_measurement_of_the_daemon_reaches_the_histogram_once(tmp_path: Path) -> None:
    """The guarantee the histograms rest on: the app updates the hub after every event, and a measurement moves the
    conversations' status, so the outlet is given each one."""
    now = 0.0
    stats = ConversationStats(clock=lambda: now)
    hub = StatusOutlets(details=lambda: DeviceStatus(conversations=stats.status()))
    path = tmp_path / "vd.prom"
    hub.configure([PrometheusTextfile(str(path), DeviceMetrics(), 5.0, schedule=Timers())])
    for n in range(1, 41):  # past the 32 latencies the status keeps, all equal
        now = n * 10.0
        stats.started(StartSession(n, trigger=Trigger.BUTTON))
        now += 0.5
        stats.observe(AgentStateChanged("listening", session=n))
        hub.update()
    got = samples(path)
    assert value(got, "voice_device_press_to_listening_seconds_count") == 40
    assert value(got, "voice_device_press_to_listening_seconds_sum") == pytest.approx(20.0)
    hub.close()


def test_the_daemon_and_its_session_process_memory_and_cpu_come_from_proc(feed: Feed) -> None:
    got = feed(DeviceStatus())
    assert value(got, "voice_device_process_resident_memory_bytes") > 10e6
    assert value(got, "voice_device_process_cpu_seconds_total") > 0
    assert not [k for k in got if k[0].startswith("voice_device_session_process_")]  # no session process
    # stands in for it; once it has said so it runs (just after its exec it may have no page resident yet)
    child = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "up\n"
        got = feed(DeviceStatus(session=SessionStatus(process=ProcessStatus(child.pid, 1))))
        assert value(got, "voice_device_session_process_resident_memory_bytes") > 0
        assert "voice_device_session_process_start_time_seconds" in {k[0] for k in got}
    finally:
        child.kill()
        child.wait()


def test_counters_outlive_a_reload_when_the_file_stays_the_same(tmp_path: Path) -> None:
    path = tmp_path / "reload.prom"
    text = LOCAL + f"metrics:\n  textfile: {path}\n"
    before = DeviceStatus()
    for reloads in (1, 2):
        (outlet,) = [o for o in configured(load_config_text(text)) if isinstance(o, PrometheusTextfile)]
        now = DeviceStatus(reloads=reloads, session=SessionStatus(metrics=SessionMetrics(
            failures=MappingProxyType({"unreachable": 1}))))
        outlet.publish(StatusChange(now, before))
        outlet.close()
        before = replace(now, session=SessionStatus())  # the new configuration's supervisor counts from 0
    got = samples(path)
    assert value(got, "voice_device_reloads_total") == 2
    assert value(got, "voice_device_session_failures_total", reason="unreachable") == 2


# ---- the file --------------------------------------------------------------------------------------------------------


def test_the_file_is_replaced_whole_by_a_rename_and_readable_by_node_exporters_user(
        feed: Feed, monkeypatch: pytest.MonkeyPatch) -> None:
    feed(DeviceStatus("idle"))
    renames: list[tuple[str, str, str, int]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        # at the rename the new file is complete beside the old one, which a reader still sees whole
        renames.append((Path(src).name, Path(dst).read_text(), Path(src).read_text(), os.stat(src).st_mode & 0o777))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    old_umask = os.umask(0o077)  # stricter than the unit's 0027
    try:
        feed(DeviceStatus("connecting"))
    finally:
        os.umask(old_umask)
    ((tmp_name, old, new, mode),) = renames
    assert tmp_name.startswith(".voice-device.prom.") and not tmp_name.endswith(".prom")  # node_exporter skips it
    assert 'state="idle"' in old and old.endswith("\n") and list(text_string_to_metric_families(old))
    assert new == feed.path.read_text() and 'voice_device_state{reason="",state="connecting"} 1.0' in new
    assert mode == 0o644 and feed.path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in feed.path.parent.iterdir()) == ["voice-device.prom"]  # nothing left beside it


def test_the_file_is_rewritten_every_interval_besides_the_changes_until_closed(feed: Feed) -> None:
    feed(DeviceStatus())
    feed(DeviceStatus("connecting"))
    assert [delay for delay, _ in feed.timers.armed] == [5.0]  # one timer, not one per change
    feed.path.unlink()
    feed.timers.fire()
    assert feed.path.exists() and [delay for delay, _ in feed.timers.armed] == [5.0]  # written, and armed again
    feed.outlet.close()
    assert feed.timers.cancelled == 1


def test_a_failed_write_is_logged_once_with_what_to_do_and_the_recovery_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "node-exporter"
    f = Feed(missing / "voice-device.prom")
    caplog.set_level(logging.INFO, logger="device.daemon.metrics")
    for state in ("idle", "connecting", "listening"):
        f.outlet.publish(StatusChange(DeviceStatus(state), DeviceStatus()))
    f.timers.fire()  # the periodic write fails too, silently
    assert not missing.exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"the directory {missing} does not exist" in warnings[0] and "metrics.textfile" in warnings[0]
    missing.mkdir()
    assert value(f(DeviceStatus("idle")), "voice_device_state", state="idle", reason="") == 1
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        f"metrics written again path={missing / 'voice-device.prom'}"]
    f.outlet.close()


@pytest.mark.parametrize(("code", "says"), [
    (errno.EACCES, "chgrp voice-device /d && chmod g+w /d"),
    (errno.EROFS, "ReadWritePaths="),
    (errno.ENOSPC, "No space left on device"),
])
def test_each_kind_of_failed_write_has_its_sentence(code: int, says: str) -> None:
    assert says in why_not_written(OSError(code, os.strerror(code)), "/d")
