"""Plain ALSA on arm64: the daemon's audio engine captures and plays speech through the installer's dsnoop/dmix
`default` beside the running daemon, with no sound server: tests/vm's own tests, run against the arm64 appliance."""

from __future__ import annotations

import pytest

from tests.vm.test_3_alsa import (  # noqa: F401  (collected again here, against the arm64 appliance)
    test_no_sound_server_is_installed_or_running,
    test_the_engine_captures_and_plays_speech_through_the_installers_default_beside_the_daemon,
)

pytestmark = pytest.mark.vm_arm64
