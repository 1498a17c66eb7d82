"""Fixtures of the API fuzzing: the local stack of the end-to-end tests (`local_api`, re-exported
from tests/e2e/conftest.py, so the stack is started the same way), an account with real tasks,
and the OpenAPI document exactly as the stack serves it.

FUZZ_MAX_EXAMPLES sets the fuzzing phase's examples per operation and generation mode: small by
default so `make test` stays quick, 200 under `make fuzz`. FUZZ_SEED replays a run (the seed in
use is printed with any failure).
"""

from __future__ import annotations

import os
import random
from typing import Any, Final

import pytest
import schemathesis
from schemathesis import BaseSchema

from tests.e2e.conftest import LocalApi, local_api
from tests.fuzz.world import FuzzWorld, build_world

__all__ = ["local_api"]

DEFAULT_MAX_EXAMPLES: Final = 20
REQUEST_TIMEOUT_SECONDS: Final = 30
CHECKS: Final = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)


def max_examples() -> int:
    raw = os.environ.get("FUZZ_MAX_EXAMPLES", "").strip()
    if not raw:
        return DEFAULT_MAX_EXAMPLES
    if not raw.isdigit() or int(raw) < 1:
        raise pytest.UsageError(f"FUZZ_MAX_EXAMPLES={raw!r} is not a positive integer")
    return int(raw)


def fuzz_config(base_url: str, token: str, seed: int, examples: int) -> dict[str, Any]:
    """Positive and negative data in the examples, coverage and fuzzing phases; the checks of
    the contract and nothing else (stateful runs are left to the e2e tests)."""
    return {
        "seed": seed,
        "base-url": base_url,
        "headers": {"Authorization": f"Bearer {token}"},
        "request-timeout": REQUEST_TIMEOUT_SECONDS,
        "generation": {"mode": "all", "max-examples": examples},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "suppress-health-check": ["too_slow", "filter_too_much"],
    }


@pytest.fixture(scope="session")
def fuzz_world(local_api: LocalApi) -> FuzzWorld:
    return build_world(local_api)


@pytest.fixture(scope="session")
def fuzz_seed() -> int:
    raw = os.environ.get("FUZZ_SEED", "").strip()
    seed = int(raw) if raw else random.SystemRandom().randrange(2**32)
    print(f"FUZZ_SEED={seed} FUZZ_MAX_EXAMPLES={max_examples()}")
    return seed


@pytest.fixture(scope="session")
def api_schema(fuzz_world: FuzzWorld, fuzz_seed: int) -> BaseSchema:
    """The document the running stack serves at /api/openapi.json (no token needed)."""
    base_url = fuzz_world.api.base_url
    config = schemathesis.Config.from_dict(
        fuzz_config(base_url, fuzz_world.token, fuzz_seed, max_examples())
    )
    return schemathesis.openapi.from_url(f"{base_url}/api/openapi.json", config=config)
