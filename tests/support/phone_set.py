"""12-megapixel phone photos made from the bundled corpus at test time (never committed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.http_events import REPO

MAKER = REPO / "tests/fixtures/corpus/make_phone_set.py"
CACHE = REPO / ".cache" / "phone-set"


def phone_set(count: int, width: int = 4032, height: int = 3024) -> list[Path]:
    """The first `count` photos of the deterministic set, generated once and cached."""
    folder = CACHE / f"{width}x{height}"
    wanted = [folder / f"phone_{i + 1:03d}.jpg" for i in range(count)]
    if not all(path.exists() for path in wanted):
        subprocess.run(
            [sys.executable, str(MAKER), str(folder), str(count), "--width", str(width),
             "--height", str(height)],
            check=True, capture_output=True,
        )
    return wanted
