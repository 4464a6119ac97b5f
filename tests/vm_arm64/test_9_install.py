"""The installer on arm64's live system (last: the uninstall removes what the other modules use): a second run
changes nothing and does not restart the service; uninstall, then purge, leave nothing behind. tests/vm's own
tests, run against the arm64 appliance."""

from __future__ import annotations

import pytest

from tests.vm.test_9_install import (  # noqa: F401  (collected again here, against the arm64 appliance)
    test_a_second_install_changes_nothing_and_does_not_restart_the_service,
    test_uninstall_then_purge_leave_nothing_behind,
)

pytestmark = pytest.mark.vm_arm64
