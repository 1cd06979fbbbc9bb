"""What every benchmark script does at the end: print the report and optionally save the JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def finish(results: dict[str, Any], print_report: Callable[[dict[str, Any]], None], json_path: Path | None) -> int:
    print_report(results)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nresults written to {json_path}")
    return 0
