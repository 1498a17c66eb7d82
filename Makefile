# Everything a fresh machine needs: `make run` serves the API locally, `make test` checks it all.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP_QUIET := --quiet --disable-pip-version-check
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test lint typecheck unit integration e2e demo bench fuzz deploy-check seed-aws phone-set clean

# pip's own lines for each package it fetches and installs, so a first run is not silent
PIP_SHOWN := "^(Collecting|Installing collected|Successfully installed|ERROR)"

$(STAMP): requirements-dev.txt layers/deps/requirements.txt layers/imaging/requirements.txt \
		cli/pyproject.toml
	@test -x $(PY) || (echo "creating $(VENV) with $(PYTHON)" && $(PYTHON) -m venv $(VENV))
	@$(PY) -m pip install $(PIP_QUIET) --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	@echo "installing requirements-dev.txt into $(VENV) (the first time takes a few minutes)"
	@$(PY) -m pip install --disable-pip-version-check --progress-bar off -r requirements-dev.txt 2>&1 \
		| grep --line-buffered -E $(PIP_SHOWN) || true
	@$(PY) -c "import moto, PIL, aws_lambda_powertools, jwt, pytest, playwright, openapi_python_client, standardwebhooks, pixelbatch_cli" \
		|| (echo "dependency install failed" && exit 1)
	@touch $(STAMP)

## Start the whole system on the embedded emulator and serve the API (PORT, default 3000).
run: $(STAMP)
	$(PY) -m devstack

## Lint, type-check and run every test suite (unit, integration on moto, end-to-end over HTTP).
test: $(STAMP) lint typecheck
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	@for handler in functions/*/app.py; do $(VENV)/bin/mypy --no-error-summary $$handler || exit 1; done

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP)
	$(PY) -m pytest tests/integration

e2e: $(STAMP)
	$(PY) -m pytest tests/e2e

## Seed the feature catalog of a deployed stack: STACK=pixelbatch-prod (tables from its outputs),
## or FEATURES_TABLE=... PIPELINES_TABLE=...; uses your AWS credentials (the stack's OperatorPolicy).
seed-aws: $(STAMP)
	PYTHONPATH=layers/core $(PY) -m pixelbatch.seed \
		$(if $(STACK),--stack "$(STACK)",--features-table "$(FEATURES_TABLE)" --pipelines-table "$(PIPELINES_TABLE)")

## The deploy checks: cfn-lint, sam validate and build, statelint, checkov (template and translated).
deploy-check: $(STAMP)
	PY=$(PY) scripts/deploy_check.sh

## 12-megapixel phone-sized JPEGs made from the bundled photos (for demos and benchmarks).
phone-set: $(STAMP)
	$(PY) tests/fixtures/corpus/make_phone_set.py .cache/phone 50

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .cache .aws-sam

## Benchmarks on 12-megapixel photos; ratios measured side by side, written to docs/performance.md.
bench: $(STAMP)
	$(PY) -m bench

## Long API fuzzing run (schemathesis against the served OpenAPI document on the local stack).
fuzz: $(STAMP)
	FUZZ_MAX_EXAMPLES=$${FUZZ_MAX_EXAMPLES:-200} $(PY) -m pytest tests/fuzz -p no:randomly -q

## Upload real photos, run a batch on the local stack with a progress display, save the ZIP.
## With PORT naming a running stack (`make run`), the demo uses it; otherwise it starts its own.
demo: $(STAMP)
	@if [ -n "$(PORT)" ] && $(PY) -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$(PORT)/local/health', timeout=2)" 2>/dev/null; then \
		$(PY) -m devstack.demo --url http://127.0.0.1:$(PORT); \
	else \
		$(PY) -m devstack.demo; \
	fi
