"""Garbage collection for the long-running stack process.

The stack process holds every emulated table item and stored object: about a million Python
objects after a few batches. Each full collection walks all of them, 0.7 to 1.2 s with every
thread of the process (the emulator and the gateway) stopped, which showed as second-long API
stalls under load. After each full collection the survivors are frozen, so that the next one
walks only the objects made since. The price: a reference cycle among frozen objects is never
reclaimed, which over an emulator's lifetime is a few megabytes.
"""

from __future__ import annotations

import gc
from typing import Any

FULL = 2


def freeze_survivors_of_full_collections() -> None:
    gc.collect()
    gc.freeze()
    if _freeze_after_full not in gc.callbacks:
        gc.callbacks.append(_freeze_after_full)


def _freeze_after_full(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info["generation"] == FULL:
        gc.freeze()
