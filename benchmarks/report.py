"""How a benchmark reports: an aligned `label  value` table on stdout and every figure in a JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(rows: list[tuple[str, str]], result: dict[str, Any], json_path: str | None) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
