"""Session-wide: every role's use of its grants is collected in one file (the local stacks the
tests start, in this process and as subprocesses, append to it), and the least-privilege check
that reads it runs after every other test."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from devstack.iam_enforce import IAM_RECORD_VARIABLE


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get(IAM_RECORD_VARIABLE):
        folder = Path(tempfile.mkdtemp(prefix="pixelbatch-iam-"))
        os.environ[IAM_RECORD_VARIABLE] = str(folder / "grants-used.jsonl")
    config.addinivalue_line("markers", "after_all: runs after every other test of the session")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    last = [item for item in items if item.get_closest_marker("after_all")]
    items[:] = [item for item in items if item not in last] + last
