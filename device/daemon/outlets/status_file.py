"""`daemon.status_file`: the status as JSON in a file, replaced atomically on each change of the state or its
reason. On disk and world-readable: written without the transcripts, secrets redacted (`status_json`)."""

from __future__ import annotations

import logging

from device.config import Config
from device.daemon.outlets import StatusChange, outlet
from device.daemon.status import status_json, without_transcripts, write_json_file

log = logging.getLogger("device.daemon.status")


class StatusFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self._failing = False

    def publish(self, change: StatusChange) -> None:
        if not change.state_changed:
            return
        try:
            write_json_file(self.path, status_json(without_transcripts(change.status)))
        except OSError as e:
            if not self._failing:
                log.warning("status file not written path=%s error=%s (further failures are not logged)",
                            self.path, e.strerror or e)
            self._failing = True
        else:
            self._failing = False

    def close(self) -> None:
        pass  # the file stays: the last state written


@outlet("status_file")
def status_file(config: Config) -> StatusFile | None:
    path = config.daemon.status_file
    return StatusFile(path) if path else None
