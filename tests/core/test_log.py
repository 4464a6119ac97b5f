"""Log lines reach stderr even while the audio layer points fd 2 at /dev/null to hide PortAudio's probing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import logging, os, sys, threading
    from device.audio.devices import quiet_stderr
    from device.core.log import setup_logging, stderr_stream

    setup_logging("info")
    sys.stderr = stderr_stream()
    inside, done = threading.Event(), threading.Event()

    def probe():  # the audio thread: PortAudio's noise on fd 2 while the event loop logs
        with quiet_stderr():
            os.write(2, b"ALSA lib pcm.c: noise\\n")
            inside.set()
            done.wait(5)

    t = threading.Thread(target=probe)
    t.start()
    inside.wait(5)
    logging.getLogger("device.daemon.app").warning("restarting to return memory rss_mb=85")
    print("a python-level write", file=sys.stderr)
    done.set()
    t.join()
    logging.getLogger("device.daemon.app").info("after the probe")
""")


def test_log_lines_written_while_fd_2_is_quieted_are_kept_and_the_native_noise_is_not(tmp_path: Path) -> None:
    err = tmp_path / "stderr"
    with err.open("w") as f:
        subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, stderr=f, check=True, timeout=60)
    text = err.read_text()
    assert "warning device.daemon.app: restarting to return memory rss_mb=85" in text, text
    assert "a python-level write" in text and "after the probe" in text, text
    assert "ALSA lib" not in text, text
