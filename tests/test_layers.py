"""The rooms of `device/` and the only ways between them: an explicit map of which package may import which.

A package is a folder right under `device/` (its subfolders count as it: `session/process/` is `session`), except
the rooms named in `ALLOWED` with a dot (`audio.wake`), which are packages of their own inside their parent.
`device/__init__.py`, `__main__.py` and `cli.py` are `cli`. An import from one package into another is allowed only
when the map lists that edge: upward (audio → session) and sideways (session → controls) both fail, and so does a
package the map has no row for. Every import statement counts, at module level or inside a function (a lazy import
is still a dependency), and so does an import under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "device"

# package → the packages it may import (besides itself). The map is layered (test_the_map_has_no_cycle).
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "config": frozenset({"core"}),
    "audio": frozenset({"core", "config"}),
    "audio.wake": frozenset({"core", "config", "audio"}),
    "controls": frozenset({"core", "config"}),
    "session": frozenset({"core", "config", "audio"}),
    "daemon": frozenset({"core", "config", "audio", "audio.wake", "controls", "session"}),
    "tools": frozenset({"core", "config", "audio", "audio.wake", "controls"}),
    "cli": frozenset({"core", "config", "audio", "session", "daemon", "tools"}),
}


def package_of(module: str) -> str:
    """`device.session.process.host` → `session`; `device.audio.wake.detector` → `audio.wake`; `device.cli` → `cli`."""
    parts = module.split(".")
    assert parts[0] == "device", module
    if len(parts) == 1 or parts[1] in ("cli", "__main__"):
        return "cli"
    rooms = [".".join(parts[1:n]) for n in range(len(parts), 1, -1)]  # the longest first
    return next((room for room in rooms if room in ALLOWED), parts[1])


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of everything from `device…` the file imports: `from device.audio import wake` gives
    `device.audio.wake`, so importing a room through its parent is seen."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    # `device` itself and its dunders (`from device import __version__`) are the package's docstring and version
    return [(line, name) for line, name in found
            if name.split(".")[0] == "device" and not name.startswith("device.__") and name != "device"]


def violations(root: Path = ROOT) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        here = module_name(path, root)
        mine = package_of(here)
        where = str(path.relative_to(root.parent))
        if mine not in ALLOWED:
            bad.append(f"{where}: package {mine!r} has no row in ALLOWED")
            continue
        for line, target in imports_of(path):
            theirs = package_of(target)
            if theirs != mine and theirs not in ALLOWED[mine]:
                bad.append(f"{where}:{line}: {here} ({mine}) imports {target} ({theirs}): not an allowed edge")
    return bad


def edges(root: Path = ROOT) -> set[tuple[str, str]]:
    """(importer, imported) of every import between two packages."""
    found = set()
    for path in root.rglob("*.py"):
        mine = package_of(module_name(path, root))
        found |= {(mine, package_of(target)) for _, target in imports_of(path)} - {(mine, mine)}
    return found


def test_every_import_is_an_allowed_edge() -> None:
    assert violations() == []


def test_every_allowed_edge_is_used() -> None:
    """The map says no more than the code does: an edge nobody needs any more leaves the map with its last import."""
    assert {(a, b) for a, targets in ALLOWED.items() for b in targets} == edges()


def test_every_package_has_a_row() -> None:
    packages = {package_of(module_name(p)) for p in ROOT.rglob("*.py")}
    assert packages == set(ALLOWED)


def test_the_map_has_no_cycle() -> None:
    """Each package reaches only packages below it: a depth-first walk never comes back to where it is."""

    def below(package: str, path: tuple[str, ...]) -> None:
        for target in ALLOWED[package]:
            assert target in ALLOWED, f"{package} → {target}: no such package"
            assert target not in path, f"cycle: {' → '.join((*path, target))}"
            below(target, (*path, target))

    for package in ALLOWED:
        below(package, (package,))


@pytest.mark.parametrize(
    ("module", "package"),
    [
        ("device.session.process.host", "session"),
        ("device.audio.wake.detector", "audio.wake"),
        ("device.audio.wake", "audio.wake"),
        ("device.audio.engine", "audio"),
        ("device.audio.wakeword", "audio"),  # a prefix of a name is not the room
        ("device.__main__", "cli"),
        ("device", "cli"),
    ],
)
def test_package_of(module: str, package: str) -> None:
    assert package_of(module) == package


@pytest.mark.parametrize(
    ("where", "source", "expected"),
    [
        ("session", "from device.controls.machine import Effect\n", 1),  # sideways: caught
        ("session/process", "from device.controls.timers import Timers\n", 1),  # a subfolder is its package
        ("session/process", "from device.audio.ring import Ring\n", 0),  # …and has its package's edges
        ("audio", "from device.session.supervisor import Supervisor\n", 1),  # upward: caught
        ("audio", "from device.audio.wake.detector import Detection\n", 1),  # into the room above it
        ("audio", "from device.audio import wake\n", 1),  # the same, through the parent
        ("audio/wake", "from device.audio.ring import Ring\nfrom device.audio import ring\n", 0),  # down: fine
        ("controls", "def f():\n    from device.daemon import app\n", 1),  # a lazy import counts too
        ("controls", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import device.audio.ring\n", 1),
        ("core", "from device.core.vocabulary import Event\nimport numpy\nfrom device import __version__\n", 0),
        ("core", "import device\nimport device.core.log\n", 0),
        ("plugins", "from device.core.vocabulary import Event\n", 1),  # a package with no row
    ],
)
def test_the_check_itself_catches_a_forbidden_edge(tmp_path: Path, where: str, source: str, expected: int) -> None:
    pkg = tmp_path / "device" / where
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text(source)
    assert len(violations(tmp_path / "device")) == expected, violations(tmp_path / "device")
