"""The arm64 appliance suite: the Raspberry Pi's architecture (64-bit Raspberry Pi OS is Debian 12 arm64), emulated.

The same appliance as tests/vm, built for arm64 by `scripts/vm-image.sh --arch arm64` (its packages configured and
its installer run in a chroot through binfmt_misc and qemu-user; PyAudio compiled there, as pip compiles it on a
Pi) and booted by `qemu-system-aarch64 -M virt -cpu cortex-a72` (software emulation: no virtualisation for arm64
here). Every module sets `pytestmark = pytest.mark.vm_arm64`: `pytest -m vm_arm64` runs exactly this suite. It comes
after tests/vm in a run (name order) and its VM boots once that suite's has been powered off, never beside it: the
machine has two cores. Under CI=true a missing prerequisite fails the suite, as in tests/vm.

Tests that hold on both architectures are tests/vm's own functions, imported into these modules: pytest runs them
again here, against this package's `appliance`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.vm.appliance import Appliance
from tests.vm.conftest import booted, image_for, spoken


@pytest.fixture(scope="package")
def vm_image() -> Path:
    return image_for("arm64")


@pytest.fixture(scope="package")
def vm_speech() -> dict[str, np.ndarray]:
    return spoken()


@pytest.fixture(scope="package")
def appliance(vm_image: Path, vm_speech: dict[str, np.ndarray]) -> Iterator[Appliance]:
    yield from booted("arm64", vm_image, vm_speech)
