"""The one error type of configuration: a sentence naming the file, the line and the key path."""

from __future__ import annotations


class ConfigError(Exception):
    """`kiosk.yaml:14: audio.sample_rate: expected one of 16000, 24000, 48000, got 44`."""

    def __init__(self, message: str, *, file: str = "<config>", line: int | None = None, key: str = ""):
        # a key comes from the file: one holding a newline or a control character must not break the line
        key = key if key.isprintable() else key.encode("unicode_escape").decode("ascii")
        self.file = file
        self.line = line
        self.key = key
        self.message = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")
