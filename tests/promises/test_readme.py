"""The README's "What the device promises" table names the tests that prove each promise: each must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def promises_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## What the device promises")
    return text[start:text.index("\n## ", start + 1)]


def test_every_test_the_promises_name_exists() -> None:
    section = promises_section()
    sources = {p: p.read_text() for p in (ROOT / "tests").rglob("test_*.py")}
    named = re.findall(r"`((?:tests/[\w/]+\.py)(?:::(\w+))?|test_\w+)`", section)
    assert len(named) >= 15, named
    for whole, function in named:
        if whole.startswith("tests/"):
            path = ROOT / whole.split("::")[0]
            assert path.exists(), f"the README names {whole}, which does not exist"
            if function:
                assert re.search(rf"def {function}\b", path.read_text()), f"the README names {whole}: no such test"
        else:
            assert any(re.search(rf"def {whole}\b", text) for text in sources.values()), \
                f"the README names {whole}: no such test"
