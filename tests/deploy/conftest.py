"""Fixtures of the deploy checks: the SAM CLI, installed on first use (see tooling.py)."""

from __future__ import annotations

import os

import pytest

from tests.deploy.tooling import REQUIRE_SAM_VARIABLE, SamCli, SamUnavailable, install_sam


@pytest.fixture(scope="session")
def sam(tmp_path_factory: pytest.TempPathFactory) -> SamCli:
    try:
        executable = install_sam()
    except SamUnavailable as error:
        message = f"the SAM CLI could not be installed:\n{error}"
        if os.environ.get(REQUIRE_SAM_VARIABLE) == "1":
            pytest.fail(message)
        pytest.skip(message)
    return SamCli.prepare(executable, tmp_path_factory.mktemp("sam-state"))
