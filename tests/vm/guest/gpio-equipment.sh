#!/usr/bin/env bash
# Test equipment of the VM suite, run by scripts/vm-image.sh in the image's chroot after the installer: what a
# Raspberry Pi has for GPIO and this PC lacks, for tests/vm/test_5_gpio.py. Not part of the product.
#
#   gpio-equipment.sh LGPIO_SDIST WHEELHOUSE
#
# - A real GPIO chip the test can drive from outside: gpio-sim (a gpiochip whose lines' outside world is set through
#   sysfs, and whose inputs raise interrupts). Debian builds neither it nor gpio-mockup, nor the IRQ simulator both
#   select (IRQ_SIM: a bool, so built into a kernel or not at all; Debian's is without). Both are compiled here as
#   out-of-tree modules (irq_sim.ko, gpio-sim.ko) from Debian's linux-source of the image kernel's exact version,
#   against that kernel's headers, and installed under /lib/modules/VER/extra. Unsigned: the kernel loads them
#   with a taint (no lockdown without Secure Boot).
# - lgpio, gpiozero's pin driver on a Pi (Raspberry Pi OS's python3-lgpio; Debian has none, PyPI only an sdist):
#   built into a static module (PYPI=1 bundles the C library) and put in the system's site-packages, where the
#   apt package would be; the daemon's venv (--system-site-packages) sees it there, as on a Pi.
# The packages installed for the builds are purged again: the image keeps the two modules and lgpio.
set -euo pipefail

SDIST="${1:?the lgpio sdist}"
WHEELHOUSE="${2:?the wheelhouse (setuptools and wheel for the lgpio build)}"
VENV=/opt/voice-device/venv

say() { echo "gpio-equipment: $*" >&2; }
die() { echo "gpio-equipment: $*" >&2; exit 1; }

mapfile -t kernels < <(cd /boot && ls vmlinuz-* | sed 's/^vmlinuz-//')
[[ ${#kernels[@]} -eq 1 ]] || die "expected one kernel in /boot, found: ${kernels[*]:-none}"
KVER="${kernels[0]}"                              # 6.1.0-50-amd64
SERIES="$(cut -d. -f1,2 <<< "$KVER")"             # 6.1
VERSION="$(dpkg-query -W -f='${Version}' "linux-image-$KVER")"  # 6.1.176-1: the source that kernel was built from
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# ---- the build packages, only those missing, purged at the end ----------------------------------------------------

BUILD_PACKAGES=("linux-source-$SERIES=$VERSION" "linux-headers-$KVER" make swig)
added=()
for p in "${BUILD_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "${p%%=*}" 2>/dev/null | grep -q "install ok installed" || added+=("$p")
done
say "installing ${added[*]:-nothing} (linux $VERSION)"
apt-get update -qq
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${added[@]}" \
    > "$WORK/apt.log" 2>&1; then
  tail -20 "$WORK/apt.log" >&2
  die "the kernel $KVER's headers or source ($VERSION) are not in the archive: the cached base is older than it" \
    "(scripts/vm-image.sh clean, then build again)"
fi

# ---- irq_sim.ko and gpio-sim.ko -----------------------------------------------------------------------------------

build_modules() {
  local src="$WORK/src" dir="$WORK/modules" tree="linux-source-$SERIES"
  mkdir -p "$src" "$dir"
  tar -C "$src" -xJf "/usr/src/linux-source-$SERIES.tar.xz" "$tree/kernel/irq/irq_sim.c" \
    "$tree/drivers/gpio/gpio-sim.c" "$tree/drivers/gpio/gpiolib.h"
  cp "$src/$tree/drivers/gpio/gpio-sim.c" "$src/$tree/drivers/gpio/gpiolib.h" "$dir/"
  # irq_sim.c as a module: it runs each simulated interrupt's flow handler through irq_to_desc(), which the kernel
  # does not export to modules; generic_handle_irq() is exported and runs the same handler (handle_simple_irq, set
  # for every simulated interrupt when it is mapped). A module also needs a licence to use the GPL exports.
  {
    echo "#include <linux/module.h>"
    sed 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq(irqnum);/' "$src/$tree/kernel/irq/irq_sim.c"
    echo 'MODULE_DESCRIPTION("Interrupt simulator (kernel/irq/irq_sim.c), built out of tree for gpio-sim");'
    echo 'MODULE_LICENSE("GPL");'
  } > "$dir/irq_sim.c"
  grep -q 'generic_handle_irq(irqnum);' "$dir/irq_sim.c" || die "irq_sim.c of $VERSION is not the one this script patches"
  echo 'obj-m := irq_sim.o gpio-sim.o' > "$dir/Kbuild"
  if ! make -C "/usr/src/linux-headers-$KVER" M="$dir" modules > "$WORK/make.log" 2>&1; then
    tail -30 "$WORK/make.log" >&2
    die "the gpio-sim modules did not build against linux-headers-$KVER (log above)"
  fi
  strip --strip-debug "$dir/irq_sim.ko" "$dir/gpio-sim.ko"
  install -D -m 0644 -t "/lib/modules/$KVER/extra" "$dir/irq_sim.ko" "$dir/gpio-sim.ko"
  depmod "$KVER"
  modinfo -k "$KVER" -F depends gpio-sim | grep -q irq_sim || die "depmod does not know gpio-sim's dependencies"
  say "built /lib/modules/$KVER/extra/{irq_sim,gpio-sim}.ko"
}

# ---- lgpio ----------------------------------------------------------------------------------------------------------

build_lgpio() {
  local site
  site="$(python3 -c 'import site; print(site.getsitepackages()[0])')"  # /usr/local/lib/python3.11/dist-packages
  if ! (cd "$WORK" && PYPI=1 "$VENV/bin/python" -m pip wheel -q --disable-pip-version-check --use-pep517 --no-index \
        --find-links "$WHEELHOUSE" --no-deps -w "$WORK/wheel" "$SDIST") > "$WORK/pip.log" 2>&1; then
    tail -30 "$WORK/pip.log" >&2
    die "lgpio did not build (log above)"
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-index --no-deps --target "$site" \
    "$WORK"/wheel/lgpio-*.whl
  # Importing lgpio makes a notification FIFO in the working directory (the unit points LG_WD at its runtime dir).
  (cd "$WORK" && LG_WD="$WORK" "$VENV/bin/python" -c 'import lgpio, gpiozero.pins.lgpio') \
    || die "the daemon's venv does not import lgpio from $site"
  say "lgpio $(basename "$WORK"/wheel/lgpio-*.whl) in $site"
}

build_modules
build_lgpio
if [[ ${#added[@]} -gt 0 ]]; then
  say "purging ${added[*]%%=*} again, with what they pulled in"
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq --autoremove "${added[@]%%=*}" > "$WORK/purge.log" 2>&1 \
    || { tail -20 "$WORK/purge.log" >&2; die "the build packages could not be purged"; }
fi
