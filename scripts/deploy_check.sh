#!/usr/bin/env bash
# The deploy checks on their own: cfn-lint, `sam validate --lint`, the SAM translator,
# `sam build` for arm64 without Docker, statelint on the state machine with its substitutions
# filled in, checkov over the template and the translated template, and the operational
# properties of the template (tests/deploy/test_operations.py). Unlike in `make test`, a SAM CLI
# or checkov that cannot be installed fails here.
# Extra arguments go to pytest (e.g. -k statelint).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${PY:-.venv/bin/python}"
DEPLOY_CHECK_REQUIRE_SAM=1 exec "$python" -m pytest tests/deploy -p no:randomly -q --durations=0 "$@"
