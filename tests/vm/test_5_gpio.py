"""Real GPIO lines: the appliance's button and LED on a kernel GPIO chip, the daemon under its real unit with
gpiozero's production pin factory (lgpio, on /dev/gpiochip0 as on a Raspberry Pi 4), driven from outside the
daemon: the test pulls the button's line as a finger would and reads the LED's line as an eye would.

The chip is gpio-sim (tests/vm/gpiosim.py; its modules and lgpio are built into the image: tests/vm/guest/
gpio-equipment.sh). What else the VM lends the daemon to be a Pi: a Pi 4's board revision in /proc/cpuinfo, bind-
mounted over the unit's own by a test drop-in (gpiozero's Pi factories map BCM numbers through the board's
revision, which a PC has none of). Everything else is the unit as installed, without the suite's mock-pin drop-in,
which is put back at the end (the next modules expect mock pins).

The LED is the appliance profile's as shipped, a `pwmled` at the default maximum brightness 0.5: lgpio drives it by
software PWM at gpiozero's 100 Hz, so its line flips, and what an eye sees is the duty cycle, the share of reads
that find the line high: idle is never high; listening (solid, full pattern brightness) is about half; connecting
blinks (0.3 s at 0.4, 0.3 s dark). In the appliance's toggle mode a press starts a session and the next press ends
it: a long press ends it too, at its press, and its release starts nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import yaml

from tests.vm.appliance import Appliance
from tests.vm.gpiosim import Reading, SimChip

pytestmark = pytest.mark.vm

DROP_INS = "/etc/systemd/system/voice-device.service.d"
MOCK = f"{DROP_INS}/vm-mock-gpio.conf"
MOCK_KEPT = "/root/vm-mock-gpio.conf"
PI_BOARD = f"{DROP_INS}/vm-pi-board.conf"
CPUINFO = "/etc/vd-test/cpuinfo"
PI4 = "Hardware\\t: BCM2835\\nRevision\\t: c03111\\nModel\\t\\t: Raspberry Pi 4 Model B Rev 1.1\\n"
PI_BOARD_TEXT = f"""# Test equipment of tests/vm/test_5_gpio.py: the daemon's gpiozero sees a Raspberry Pi 4 (its Pi pin
# factories map BCM numbers through the board revision, which a PC's /proc/cpuinfo lacks). The chip is gpio-sim.
[Service]
BindReadOnlyPaths={CPUINFO}:/proc/cpuinfo
"""
VENV_PYTHON = "/opt/voice-device/venv/bin/python"
JOINED = ("pre-connect-buffering", "initializing", "listening", "thinking", "speaking")
LISTENING_DUTY = (0.35, 0.65)  # solid at 0.5: software PWM on an emulated CPU, read by another process


def profile_pins(config: str) -> tuple[int, int]:
    """The appliance profile's button pin and its one PWM LED's pin, from the installed config."""
    controls = yaml.safe_load(config)["controls"]
    assert controls["leds"]["kind"] == "pwmled" and len(controls["leds"]["pins"]) == 1, controls
    return int(controls["button"]["pin"]), int(controls["leds"]["pins"][0])


@pytest.fixture(scope="module")
def pi_board(appliance: Appliance) -> Iterator[SimChip]:
    """The chip made, the unit on the real pin factory (restarted), and everything put back afterwards."""
    machine = appliance.machine
    found = machine.run([VENV_PYTHON, "-c", "import importlib.util as u, sys; sys.exit(not u.find_spec('lgpio'))"])
    assert found.rc == 0, "the daemon's venv has no lgpio: the image's GPIO test equipment is missing"
    started = time.monotonic()
    chip = SimChip.make(machine)
    print(f"\ngpio-sim chip {chip.sysfs} live in {time.monotonic() - started:.1f} s")
    try:
        assert chip.chip == "gpiochip0", f"gpio-sim made {chip.chip}: another chip is gpiochip0, lgpio's default"
        machine.sh(f"mkdir -p /etc/vd-test && {{ cat /proc/cpuinfo; printf '{PI4}'; }} > {CPUINFO} && "
                   f"mv {MOCK} {MOCK_KEPT}")
        machine.write(PI_BOARD, PI_BOARD_TEXT)
        machine.run(["systemctl", "daemon-reload"]).check()
        started = time.monotonic()
        appliance.restart()
        appliance.wait_state("idle", timeout=60)
        print(f"the daemon on lgpio: active and idle {time.monotonic() - started:.1f} s after the restart")
        yield chip
    finally:
        machine.sh(f"rm -f {PI_BOARD} {CPUINFO}; [ ! -e {MOCK_KEPT} ] || mv {MOCK_KEPT} {MOCK}; "
                   "systemctl daemon-reload")
        appliance.restart()  # back on mock pins: the chip's lines are free again
        appliance.wait_state("idle", timeout=60)
        chip.remove()


def test_the_installer_gives_the_gpio_chip_to_the_gpio_group(appliance: Appliance, pi_board: SimChip) -> None:
    """Plain Debian leaves /dev/gpiochip* to root (0600): the installer's udev rule gives it to the gpio group, as
    Raspberry Pi OS's 99-com.rules does, and the unit's SupplementaryGroups=gpio can then open it."""
    assert appliance.sh(f"stat -c '%U %G %a' /dev/{pi_board.chip}").split() == ["root", "gpio", "660"]
    assert "voice-device's installer" in appliance.sh("cat /etc/udev/rules.d/60-voice-device.rules")


def test_the_daemon_drives_the_chip_through_lgpio_as_the_voice_device_user(appliance: Appliance,
                                                                          pi_board: SimChip) -> None:
    button, led = profile_pins(appliance.original_config)
    props = appliance.wait_active()
    pid = int(props["MainPID"])
    assert "GPIOZERO" not in appliance.props("Environment")["Environment"]  # gpiozero's own choice: lgpio first
    uid = int(appliance.sh("id -u voice-device"))
    assert appliance.pid_uid_and_unit(pid) == (uid, "voice-device.service")
    assert f"-> /dev/{pi_board.chip}" in appliance.sh(f"ls -l /proc/{pid}/fd")
    assert "_lgpio" in appliance.sh(f"cat /proc/{pid}/maps")
    # The kernel's own view of the chip: both lines requested by lgpio ("lg"), the button an input the daemon's
    # pull-up (gpiozero's pull_up=True, passed as a bias flag) holds high, the LED an output, dark while idle.
    lines = appliance.sh("cat /sys/kernel/debug/gpio")
    print(f"\n{lines.strip()}")
    assert re.search(rf"\(GPIO{button}\s*\|lg\s*\) in\s+hi", lines), lines
    assert re.search(rf"\(GPIO{led}\s*\|lg\s*\) out\s+lo", lines), lines
    assert pi_board.read(button, "pull") == "pull-up" and pi_board.read(button, "value") == "1"


def watch_while(appliance: Appliance, chip: SimChip, led: int, state: str, seconds: float) -> Reading:
    """The LED watched while the daemon shows `state` from before to after (asked again, up to three times, when the
    state moved meanwhile: the emulated board's mic can drop out under load, `failed: mic-unavailable` for a while)."""
    for _ in range(3):
        appliance.wait_state(state, timeout=60)
        reading = chip.watch(led, seconds)
        if appliance.state() == state:
            return reading
    raise AssertionError(f"the daemon did not stay {state} for {seconds} s")


def test_a_press_starts_a_session_a_long_press_ends_it_and_the_led_shows_each_state(appliance: Appliance,
                                                                                  pi_board: SimChip) -> None:
    button, led = profile_pins(appliance.original_config)
    idle = watch_while(appliance, pi_board, led, "idle", 1.0)
    print(f"\nidle: LED {idle.summary()}")
    assert idle.high == 0, idle.summary()
    cursor = appliance.cursor()

    pressed = time.monotonic()
    pi_board.press(button, 0.2)
    assert appliance.wait_state("connecting", *JOINED, timeout=60)
    before, blink, after = appliance.state(), pi_board.watch(led, 1.5), appliance.state()
    print(f"{before} → {after}: LED {blink.summary()}, per 50 ms: {' '.join(f'{w:.1f}' for w in blink.windows)}")
    if before == after == "connecting":  # blue blink 0.3 s / 0.3 s: lit windows and dark ones
        assert max(blink.windows) > 0.2 and min(blink.windows) == 0.0, blink.windows
    appliance.wait_state("listening", timeout=240)
    print(f"press → listening {time.monotonic() - pressed:.1f} s")
    listening = watch_while(appliance, pi_board, led, "listening", 2.0)
    print(f"listening: LED {listening.summary()}")
    assert LISTENING_DUTY[0] <= listening.duty <= LISTENING_DUTY[1], listening.summary()
    assert listening.flips >= 20, f"a steady line, not PWM: {listening.summary()}"

    held = time.monotonic()
    pi_board.press(button, 3.0)
    appliance.wait_state("idle", timeout=60)
    print(f"long press (3 s) → idle {time.monotonic() - held:.1f} s after it began")
    time.sleep(2)  # time for the long press's release to start something, if it did (it must not)
    dark = watch_while(appliance, pi_board, led, "idle", 1.0)
    print(f"idle again: LED {dark.summary()}")
    assert dark.high == 0, dark.summary()
    journal = appliance.journal(cursor)
    shown = re.findall(r"state state=(\S+)", journal)
    print(f"shown: {' → '.join(shown)}")
    assert shown[0] == "connecting" and "listening" in shown and shown[-1] == "idle", shown
    assert "session ended reason=button" in journal, journal
    after_the_end = journal.split("session ended reason=button", 1)[1]
    assert "state state=connecting" not in after_the_end, after_the_end  # the release started nothing
    assert "control command" not in journal, journal  # nothing but the button moved it (no `voice-device ctl`)
