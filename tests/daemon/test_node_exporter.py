"""The real daemon's metrics as a fleet's Prometheus gets them: Debian's `prometheus-node-exporter`, with only its
textfile collector, reading the directory the daemon (`voice-device run --simulate`, the virtual audio rig, a token
endpoint on a closed port) writes `metrics.textfile` in, scraped over HTTP on 127.0.0.1.

Nothing here needs a LiveKit server: a start fails `unreachable`, which the metrics must show."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from device import __version__
from tests.polling import wait_for
from tests.programs import need
from tests.proof.harness import DaemonProcess, base_config, short_dir, write_config

pytestmark = pytest.mark.audio

NODE_EXPORTER = "prometheus-node-exporter"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class NodeExporter:
    """node_exporter with the textfile collector alone on `directory`, listening on a free loopback port."""

    def __init__(self, directory: Path, log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [NODE_EXPORTER, "--collector.disable-defaults", "--collector.textfile",
             f"--collector.textfile.directory={directory}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.log_path = log
        wait_for(self._answers, 15.0, f"node_exporter to answer on 127.0.0.1:{self.port}")

    def _answers(self) -> bool:
        assert self.proc.poll() is None, f"node_exporter exited: {self.log_path.read_text()}"
        try:
            self.scrape()
        except OSError:
            return False
        return True

    def scrape(self) -> Samples:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = short_dir("vd-prom-")
    yield d
    shutil.rmtree(d)


def scraped(exporter: NodeExporter, want: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> Samples:
    """The first scrape that has every `want`ed sample at its value (a change reaches the file at once; node_exporter
    reads the file at each scrape)."""
    last: list[Samples] = [{}]

    def has_them() -> Samples | None:
        last[0] = exporter.scrape()
        return last[0] if all(last[0].get(k) == v for k, v in want.items()) else None

    try:
        return wait_for(has_them, 20.0, f"node_exporter to serve {want}")  # type: ignore[no-any-return]
    except AssertionError:
        mine = {k: v for k, v in last[0].items() if k[0].startswith(("voice_device_state", "node_textfile"))}
        raise AssertionError(f"node_exporter never served {want}; last scrape: {mine}") from None


def started_at(pid: int) -> float:
    """When process `pid` started, in seconds since the epoch (/proc: its start in ticks after boot, and the boot)."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    return ticks / os.sysconf("SC_CLK_TCK") + boot


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_node_exporter_serves_the_real_daemons_state_version_memory_and_failures(workdir: Path, audio_rig) -> None:
    need(NODE_EXPORTER)
    textfiles = workdir / "node-exporter"
    textfiles.mkdir()
    config = base_config(workdir, metrics={"textfile": str(textfiles / "voice-device.prom"), "interval_s": 1})
    exporter = NodeExporter(textfiles, workdir / "node-exporter.log")
    try:
        with DaemonProcess(write_config(workdir / "config.yaml", config), pulse_server=audio_rig.pulse_server) as d:
            d.wait_ready()
            assert d.snapshot()["version"] == __version__
            got = scraped(exporter, {key("voice_device_state", state="idle", reason=""): 1.0,
                                     key("node_textfile_scrape_error"): 0.0})
            assert got[key("voice_device_info", version=__version__, mode="push_to_talk")] == 1.0
            assert got[key("voice_device_process_resident_memory_bytes")] > 20e6  # python, numpy, the audio engine
            # the daemon's own process (not node_exporter's, not the test's): the start time is the daemon's
            assert got[key("voice_device_process_start_time_seconds")] == pytest.approx(started_at(d.pid), abs=0.02)
            assert got[key("voice_device_session_failures_total", reason="unreachable")] == 0.0
            assert key("voice_device_press_to_listening_seconds_count") in got
            # the warm session process waiting for the next session, by the pid the status gives
            wait_for(lambda: key("voice_device_session_process_resident_memory_bytes") in exporter.scrape(), 30.0,
                     "the session process's memory")

            mark = d.mark()
            assert d.command("start") == {"type": "ok"}
            d.wait_status("failed: unreachable", start=mark)
            got = scraped(exporter, {key("voice_device_state", state="failed", reason="unreachable"): 1.0,
                                     key("voice_device_state", state="idle", reason=""): 0.0,
                                     key("node_textfile_scrape_error"): 0.0})
            assert got[key("voice_device_conversations_started_total", trigger="command")] == 1.0
            # the session process reports its counts a moment after the failure it sent (the status poll carries them)
            failures = key("voice_device_session_failures_total", reason="unreachable")
            wait_for(lambda: exporter.scrape()[failures] >= 1.0, 20.0, "the failure to be counted")
            assert "metrics not written" not in d.log()
    finally:
        exporter.close()
