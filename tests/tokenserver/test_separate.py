"""The token server runs on a server, not a device: it imports nothing of the device's package or of the tests."""

from __future__ import annotations

import ast

from tests.tokenserver.harness import PACKAGE_DIR


def test_the_token_server_imports_neither_the_device_nor_the_tests() -> None:
    found = []
    for path in sorted((PACKAGE_DIR / "voice_device_tokens").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("device", "tests", "agent")]
    assert len(list((PACKAGE_DIR / "voice_device_tokens").glob("*.py"))) >= 10
    assert found == []
