"""The stack process's garbage collection: full collections walk only what is new, and
garbage made after a freeze is still reclaimed. Run in a fresh interpreter: freezing is for the
whole process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import gc, weakref
from devstack.collector import freeze_survivors_of_full_collections

class Node:
    pass

def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a

kept = [cycle() for _ in range(1000)]
freeze_survivors_of_full_collections()
frozen = gc.get_freeze_count()
more = [cycle() for _ in range(1000)]
gc.collect()
print(frozen > 0, gc.get_freeze_count() > frozen)   # the survivors of each full collection
garbage = weakref.ref(cycle())
gc.collect()
print(garbage() is None)                             # a cycle made since is reclaimed
"""


def test_full_collections_freeze_their_survivors_and_still_reclaim_new_garbage() -> None:
    ran = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True)
    assert ran.stdout.split() == ["True", "True", "True"], ran.stderr
