"""The programs outside Python that the daemon and the test suites run on this machine, each with the Debian package
that provides it — declared once. `scripts/setup.sh` installs every package named here (tests/test_programs.py keeps
the two in step and finds any program the code runs that is missing from this table), and a test that needs one calls
`need(program)` first, so a machine without it fails with the package's name instead of a traceback.

Programs run inside the VM's guest (`tests/vm/guest`, `tests/vm/engine_probe.py`, `machine.run([...])`) are the
appliance's, installed there by `scripts/install.sh`: they are not listed here.
"""

from __future__ import annotations

import shutil

import pytest

# program -> Debian package (bookworm)
PROGRAMS: dict[str, str] = {
    # the daemon's ALSA mixer (audio.mixer) and the audio rig's tools
    "amixer": "alsa-utils",
    "pulseaudio": "pulseaudio",
    "pactl": "pulseaudio-utils",
    "paplay": "pulseaudio-utils",
    "parec": "pulseaudio-utils",
    # speech for the audio, wire and real-stack tests (the test agent's TTS too)
    "espeak-ng": "espeak-ng",
    "sox": "sox",
    # network namespaces and the real stack's faults and packet capture
    "ip": "iproute2",
    "nft": "nftables",
    "iptables": "iptables",
    "tcpdump": "tcpdump",
    "setpriv": "util-linux",
    # the cluster suite's shared store (tests/cluster)
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    # the unit's offline checks and the installer's test; the unit's ExecReload runs /bin/kill (not in a minimal
    # Debian: scripts/install.sh installs it on a device too)
    "systemd-analyze": "systemd",
    "kill": "procps",
    "getent": "libc-bin",
    # the VM suite: the image, its TLS token endpoint and the emulated appliance
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-aarch64-static": "qemu-user-static",
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
    "openssl": "openssl",
    # the metrics outlet's test: node_exporter's textfile collector reading what the daemon wrote
    "prometheus-node-exporter": "prometheus-node-exporter",
}

# Debian's Essential packages: on every Debian system, never installed by hand
ESSENTIAL = frozenset({"util-linux", "libc-bin"})
# the VM suites': installed by scripts/setup.sh on x86_64 only (they emulate an x86_64 and an arm64 appliance)
VM_ONLY = frozenset({"qemu-system-x86_64", "qemu-system-aarch64", "qemu-aarch64-static", "debootstrap", "mkfs.ext4",
                     "openssl"})

# run by the code but not from Debian's archive, or always there: the shell, the interpreter, Go (the machine's
# toolchain; scripts/livekit-server.sh says what happens without it), perf (benchmarks/profile.py only, optional)
NOT_PACKAGED = frozenset({"bash", "python3", "go", "perf"})


def missing(*programs: str) -> str | None:
    """A sentence naming the programs that are not on PATH and the packages to install; None if all are."""
    absent = [p for p in programs if shutil.which(p) is None]
    if not absent:
        return None
    packages = sorted({PROGRAMS[p] for p in absent})
    return (f"{' and '.join(absent)} not installed: `apt-get install {' '.join(packages)}` "
            "(`bash scripts/setup.sh` installs every package the suites need)")


def need(*programs: str) -> None:
    """Fail the calling test with the packages to install when one of the programs is missing (CI or not: a test
    machine without them is set up wrong, and skipping would hide it)."""
    if (sentence := missing(*programs)) is not None:
        pytest.fail(sentence, pytrace=False)
