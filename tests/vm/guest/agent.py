"""The VM tests' agent inside the guest: runs the host's commands, one at a time, over a virtio serial port.

Installed into the image by scripts/vm-image.sh (as /usr/local/lib/vd-test/agent.py, started by
vd-test-agent.service); it is test equipment, not part of the product. Protocol: one JSON object a line each
way. The agent greets with {"hello": boot_id, "uptime": s}; a request {"argv": [...], "timeout": s,
"stdin": text?} is answered with {"rc": n, "stdout": text, "stderr": text} ({"rc": -1, "error": ...} when the
command could not run or timed out, and then it was killed). Python's standard library only: it runs on the
image's python3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

PORT = "/dev/virtio-ports/vd.agent"


def run(request: dict) -> dict:
    try:
        r = subprocess.run(request["argv"], input=request.get("stdin"), capture_output=True, text=True,
                           errors="replace", timeout=float(request.get("timeout", 60)), start_new_session=True)
    except subprocess.TimeoutExpired as e:
        return {"rc": -1, "error": f"timed out after {e.timeout} s", "stdout": _text(e.stdout),
                "stderr": _text(e.stderr)}
    except (OSError, KeyError, TypeError, ValueError) as e:
        return {"rc": -1, "error": f"{type(e).__name__}: {e}", "stdout": "", "stderr": ""}
    return {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


def send(port, message: dict) -> None:
    """The whole line: a virtio port takes a write in pieces (a partial write cut the JSON of a large reply)."""
    data = memoryview((json.dumps(message) + "\n").encode())
    while data:
        written = os.write(port.fileno(), data)
        data = data[written:]


def main() -> None:
    for _ in range(600):  # udev names the port shortly after boot
        if os.path.exists(PORT):
            break
        time.sleep(0.1)
    with open(PORT, "r+b", buffering=0) as port:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        send(port, {"hello": boot_id, "uptime": uptime})
        buffer = b""
        while True:
            chunk = port.read(65536)
            if not chunk:  # no host connected: a virtio port reads empty; wait for one
                time.sleep(0.2)
                continue
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    request = json.loads(line)
                except ValueError as e:
                    reply = {"rc": -1, "error": f"bad request: {e}", "stdout": "", "stderr": ""}
                else:
                    reply = run(request)
                send(port, reply)


if __name__ == "__main__":
    sys.exit(main())
