"""Every program outside Python that the daemon and the suites run is installed by scripts/setup.sh, and listed once
(tests/programs.py) with its Debian package: a fresh machine set up by the README's command has them all, and a
program added to the code without its package fails here, not on a machine where someone installed it by hand."""

from __future__ import annotations

import ast
import platform
import re
from pathlib import Path

import pytest

from tests.programs import ESSENTIAL, NOT_PACKAGED, PROGRAMS, VM_ONLY, missing

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "setup.sh"
# code that runs inside the VM's guest, where the appliance's installer provides the programs
GUEST = (ROOT / "tests" / "vm" / "guest", ROOT / "tests" / "vm" / "engine_probe.py")
# calls whose first argument names the program: subprocess.run(["x", ...]), asyncio.create_subprocess_exec("x", ...),
# shutil.which("x"), and a network namespace's ns.command(["x", ...])
RUNNERS = {"subprocess": {"run", "Popen", "check_output", "check_call", "call"},
           "asyncio": {"create_subprocess_exec"}, "shutil": {"which"}}


def setup_packages() -> set[str]:
    text = SETUP.read_text()
    found: set[str] = set()
    for name in ("APT_PACKAGES", "VM_PACKAGES"):
        arrays = re.findall(rf"\b{name}=\(([^)]*)\)", text)
        assert arrays, f"scripts/setup.sh has no {name}=(...) array"
        found |= {p for a in arrays for p in a.split()}
    return found


def first_argument(call: ast.Call) -> str | None:
    if not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.List) and arg.elts:
        arg = arg.elts[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def runs(call: ast.Call) -> bool:
    f = call.func
    if not isinstance(f, ast.Attribute):
        return False
    if isinstance(f.value, ast.Name) and f.attr in RUNNERS.get(f.value.id, ()):
        return True
    receiver = f.value.attr if isinstance(f.value, ast.Attribute) else getattr(f.value, "id", None)
    return f.attr == "command" and receiver == "ns"


def programs_run_by(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and runs(node) and (program := first_argument(node)) is not None:
            found.add(program)
    return found


def python_files() -> list[Path]:
    files = [p for d in ("device", "tests", "benchmarks", "scripts") for p in (ROOT / d).rglob("*.py")]
    return [p for p in files if not any(p == g or g in p.parents for g in GUEST)]


def test_every_program_the_code_runs_is_listed_with_its_package() -> None:
    unlisted = {}
    for path in python_files():
        for program in programs_run_by(path) - PROGRAMS.keys() - NOT_PACKAGED:
            unlisted.setdefault(program, []).append(str(path.relative_to(ROOT)))
    assert not unlisted, f"programs run by the code with no package in tests/programs.py: {unlisted}"


def test_the_scan_finds_programs_run_each_way() -> None:
    """The scan itself: a call of each shape is seen (a scan that finds nothing would pass the test above)."""
    found = programs_run_by(ROOT / "device" / "audio" / "mixer.py")  # asyncio.create_subprocess_exec("amixer", ...)
    assert "amixer" in found
    assert {"nft", "tcpdump", "iptables"} <= programs_run_by(ROOT / "tests" / "livekit" / "network.py")
    assert "pactl" in programs_run_by(ROOT / "tests" / "conftest.py")


def test_setup_installs_every_package_the_table_names() -> None:
    packages = setup_packages()
    absent = {program: package for program, package in PROGRAMS.items()
              if package not in packages and package not in ESSENTIAL}
    assert not absent, f"scripts/setup.sh does not install the packages of {absent}"


def test_every_listed_program_is_installed_here() -> None:
    wanted = [p for p in PROGRAMS if platform.machine() == "x86_64" or p not in VM_ONLY]
    sentence = missing(*wanted)
    if sentence is not None:
        pytest.fail(f"this machine is not set up as scripts/setup.sh sets one up: {sentence}", pytrace=False)
