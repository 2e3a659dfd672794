"""Write the vector files a generator builds, or check them (every ``generate*.py``).

``--check`` compares a fresh generation with the file on disk, ignoring only what
is meant to change between runs (the date and the library versions), and exits 1
when a file would change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Keys that record when and with what a file was made, not what it says.
VOLATILE = ("date", "library_versions")


def stable(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` without its :data:`VOLATILE` keys."""
    return {k: v for k, v in doc.items() if k not in VOLATILE}


def write_or_check(docs: Mapping[Path, dict[str, Any]], *, check: bool) -> int:
    """Write each ``path -> doc`` (``check=False``) or report the paths whose file
    differs from ``doc`` (``check=True``); returns the exit status."""
    bad = 0
    for path, doc in docs.items():
        if check:
            old = json.loads(path.read_text()) if path.exists() else {}
            if stable(old) != stable(doc):
                print(f"{path.name}: differs from a fresh generation")
                bad += 1
            continue
        path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 1 if bad else 0
