#!/usr/bin/env bash
# Set up (first time only), then lint, type-check, check the layers and run the test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k analysis
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check lrfind tests scripts
.venv/bin/ruff format --check lrfind tests scripts
.venv/bin/mypy lrfind
.venv/bin/lint-imports --no-cache  # the layer contract in pyproject.toml
.venv/bin/python -m pytest "$@"
