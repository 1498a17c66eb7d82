"""Fixtures of the deploy checks: the SAM CLI and checkov, installed on first use (see
tooling.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.tooling import (
    REQUIRE_SAM_VARIABLE,
    SamCli,
    SamUnavailable,
    install_checkov,
    install_sam,
)


def _installed_or_skip(install: Callable[[], Path], name: str) -> Path:
    try:
        return install()
    except SamUnavailable as error:
        message = f"{name} could not be installed:\n{error}"
        if os.environ.get(REQUIRE_SAM_VARIABLE) == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def sam(tmp_path_factory: pytest.TempPathFactory) -> SamCli:
    executable = _installed_or_skip(install_sam, "the SAM CLI")
    return SamCli.prepare(executable, tmp_path_factory.mktemp("sam-state"))


@pytest.fixture(scope="session")
def checkov() -> Path:
    return _installed_or_skip(install_checkov, "checkov")
