"""`python -m tests.livekit.delay_queue QUEUE_NUM DELAY_MS` — a userspace delay line for one NFQUEUE queue.

Every packet the kernel hands to the queue is accepted DELAY_MS after it arrived, in arrival order (a constant
delay never reorders). Prints `bound` once the queue is bound and `held N max_backlog M` when stopped (SIGTERM).
Run as root inside the test's namespace; see tests/livekit/network.py for why the delay is made this way.
"""

from __future__ import annotations

import collections
import contextlib
import signal
import sys
import threading
import time
from typing import Any

from netfilterqueue import NetfilterQueue


class DelayLine:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self._queue: collections.deque[tuple[float, Any]] = collections.deque()
        self._ready = threading.Condition()
        self.held = 0
        self.max_backlog = 0
        self.stopping = False

    def arrive(self, packet: Any) -> None:
        with self._ready:
            self._queue.append((time.monotonic() + self.delay_s, packet))
            self.held += 1
            self.max_backlog = max(self.max_backlog, len(self._queue))
            self._ready.notify()

    def release_forever(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self.stopping:
                    self._ready.wait(0.5)
                if not self._queue:
                    return
                due, packet = self._queue[0]
                wait = due - time.monotonic()
                if wait > 0 and not self.stopping:
                    self._ready.wait(wait)
                    continue
                self._queue.popleft()
            packet.accept()


def main() -> int:
    queue_num, delay_ms = int(sys.argv[1]), int(sys.argv[2])
    line = DelayLine(delay_ms / 1000)
    nfq = NetfilterQueue()
    nfq.bind(queue_num, line.arrive, max_len=8192)
    releaser = threading.Thread(target=line.release_forever, daemon=True)
    releaser.start()

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print("bound", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        nfq.run()  # until SIGTERM
    with line._ready:
        line.stopping = True
        line._ready.notify()
    releaser.join(timeout=2)
    nfq.unbind()
    print(f"held {line.held} max_backlog {line.max_backlog}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
