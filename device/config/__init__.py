"""Configuration: YAML files into frozen dataclasses, one per subsystem.

Owns the schema (`schema.py`), the loader that validates with file:line:key errors and expands `${VAR}`
(`loader.py`), and masking of secrets for display. Nothing here touches hardware or the network.
"""

from device.config.errors import ConfigError
from device.config.loader import load_config, load_config_text
from device.config.schema import (
    AudioConfig,
    Config,
    ControlsConfig,
    DaemonConfig,
    LiveKitConfig,
    LoggingConfig,
    SessionConfig,
)

__all__ = [
    "AudioConfig",
    "Config",
    "ConfigError",
    "ControlsConfig",
    "DaemonConfig",
    "LiveKitConfig",
    "LoggingConfig",
    "SessionConfig",
    "load_config",
    "load_config_text",
]
