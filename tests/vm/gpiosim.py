"""A real GPIO chip in the VM, driven from outside the daemon as a finger and an eye would: gpio-sim.

The image carries gpio-sim and the IRQ simulator it needs as out-of-tree modules (tests/vm/guest/gpio-equipment.sh).
`SimChip.make(machine)` loads them and makes one chip through configfs shaped like a Raspberry Pi 4's gpiochip0
(label `pinctrl-bcm2711`, lines named GPIO0..GPIO27: BCM numbers are line offsets, as gpiozero's lgpio factory
takes them). The outside world of each line is its sysfs directory, `/sys/devices/platform/gpio-sim.N/gpiochipM/
sim_gpioK`: `pull` (pull-up / pull-down) is what a button wired to the pin does to an input line, and raises the
line's interrupt on a change; `value` is what an output line is driven to (an LED's anode).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from tests.vm.machine import Machine

CONFIGFS = "/sys/kernel/config/gpio-sim"
LABEL = "pinctrl-bcm2711"  # a Raspberry Pi 4's gpiochip0
LINES = 28  # GPIO0..GPIO27, the 40-pin header's

# Run by the guest's python3: the LED line's value read as fast as sysfs answers for `seconds` (each read a fresh
# look at the line), summed per `window` seconds: a PWM output's duty cycle and its flips, a blink's on and off.
SAMPLER = """
import json, os, sys, time
path, seconds, window = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
fd = os.open(path, os.O_RDONLY)
start = time.monotonic()
windows, samples, high, flips, last = [], 0, 0, 0, None
while (t := time.monotonic() - start) < seconds:
    value = os.pread(fd, 8, 0)[:1] == b"1"
    index = int(t / window)
    while len(windows) <= index:
        windows.append([0, 0])
    windows[index][0] += 1
    windows[index][1] += value
    samples, high, flips, last = samples + 1, high + value, flips + (last is not None and value != last), value
    time.sleep(0.0005)
print(json.dumps({"samples": samples, "high": high, "flips": flips, "windows": windows}))
"""


@dataclass(frozen=True)
class Reading:
    """What the LED line did while it was watched."""

    samples: int
    high: int
    flips: int
    windows: list[float]  # the share of reads that found it high, window by window (empty ones left out)

    @property
    def duty(self) -> float:
        return self.high / self.samples

    def summary(self) -> str:
        return f"duty {self.duty:.2f} over {self.samples} reads, {self.flips} flips"


@dataclass
class SimChip:
    machine: Machine
    name: str  # the configfs device: /sys/kernel/config/gpio-sim/NAME
    chip: str  # gpiochipM: /dev/gpiochipM
    sysfs: str  # /sys/devices/platform/gpio-sim.N/gpiochipM

    @classmethod
    def make(cls, machine: Machine, name: str = "pi") -> SimChip:
        """Load the modules and make the chip live; raises AssertionError saying what is missing."""
        modules = machine.run(["modprobe", "gpio-sim"])
        assert modules.rc == 0, (f"gpio-sim does not load in the VM ({modules.stderr.strip()}): the image's GPIO test "
                                 "equipment is missing (scripts/vm-image.sh, tests/vm/guest/gpio-equipment.sh)")
        # systemd mounts configfs when its module comes; mount it here if that has not happened yet
        machine.sh("mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config")
        dev, bank = f"{CONFIGFS}/{name}", f"{CONFIGFS}/{name}/bank0"
        lines = " ".join(f"mkdir {bank}/line{n} && echo GPIO{n} > {bank}/line{n}/name &&" for n in range(LINES))
        machine.sh(f"mkdir {dev} {bank} && echo {LINES} > {bank}/num_lines && echo {LABEL} > {bank}/label && "
                   f"{lines} echo 1 > {dev}/live && udevadm settle")
        device, chip = machine.sh(f"cat {dev}/dev_name {bank}/chip_name").stdout.split()
        return cls(machine, name, chip, f"/sys/devices/platform/{device}/{chip}")

    def line(self, offset: int, attribute: str) -> str:
        return f"{self.sysfs}/sim_gpio{offset}/{attribute}"

    def read(self, offset: int, attribute: str) -> str:
        return self.machine.run(["cat", self.line(offset, attribute)]).check().stdout.strip()

    def press(self, offset: int, hold_s: float) -> None:
        """A button wired to ground on an input with the pull-up: held down `hold_s` (timed in the guest)."""
        pull = shlex.quote(self.line(offset, "pull"))
        self.machine.sh(f"echo pull-down > {pull} && sleep {hold_s} && echo pull-up > {pull}", timeout=hold_s + 60)

    def watch(self, offset: int, seconds: float, window: float = 0.05) -> Reading:
        r = self.machine.run(["python3", "-c", SAMPLER, self.line(offset, "value"), str(seconds), str(window)],
                             timeout=seconds + 60).check()
        found = json.loads(r.stdout)
        return Reading(found["samples"], found["high"], found["flips"],
                       [high / n for n, high in found["windows"] if n])

    def remove(self) -> None:
        """Take the chip down and its configfs tree away (its lines must be free: stop their users first)."""
        dev = f"{CONFIGFS}/{self.name}"
        self.machine.sh(f"echo 0 > {dev}/live && rmdir {dev}/bank0/line* {dev}/bank0 {dev}")
