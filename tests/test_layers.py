"""The layers of `device/` import downward only: core → config → audio → controls → session → daemon → cli.

Every import statement counts, at module level or inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "device"
LAYERS = ("core", "config", "audio", "controls", "session", "daemon", "cli")


def layer_of(module: str) -> int:
    """`device.session.host` → 4; `device.cli` and `device.__main__` are the top."""
    parts = module.split(".")
    assert parts[0] == "device", module
    if len(parts) == 1 or parts[1] in ("cli", "__main__"):
        return LAYERS.index("cli")
    return LAYERS.index(parts[1])


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every `device…` module the file imports."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "device"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("device"):
            # `from device import audio` imports the sub-package itself
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "device" else [node.module]
            found += [(node.lineno, n) for n in names if n.split(".")[0] == "device"]
    return found


def violations(root: Path = ROOT) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        here = module_name(path, root)
        mine = layer_of(here)
        for line, target in imports_of(path):
            if target == "device" or target.startswith("device.__"):
                continue  # the package itself: its docstring and __version__
            theirs = layer_of(target)
            if theirs > mine:
                bad.append(f"{path.relative_to(root.parent)}:{line}: {here} ({LAYERS[mine]}) imports {target} "
                           f"({LAYERS[theirs]})")
    return bad


def test_no_layer_imports_a_higher_one() -> None:
    assert violations() == []


def test_audio_and_config_import_nothing_above_them() -> None:
    for package in ("audio", "config", "core"):
        for path in (ROOT / package).rglob("*.py"):
            for line, target in imports_of(path):
                assert layer_of(target) <= LAYERS.index(package), f"{path}:{line} imports {target}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from device.session.supervisor import Supervisor\n", 1),  # audio importing session: caught
        ("def f():\n    from device.daemon import app\n", 1),  # a lazy import counts too
        ("from device.core.vocabulary import Event\nimport numpy\n", 0),  # downward and third-party: fine
    ],
)
def test_the_check_itself_catches_an_upward_import(tmp_path: Path, source: str, expected: int) -> None:
    pkg = tmp_path / "device" / "audio"
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text(source)
    assert len(violations(tmp_path / "device")) == expected
