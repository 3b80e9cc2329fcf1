#!/usr/bin/env bash
# Create .venv if missing and install lrfind with its test tools and the extras the tests use
# (lightning, hf: about two minutes more on a cold pip cache; bench: schedule-free and Prodigy,
# which tests/test_families.py trains), pinned by constraints.txt.
# Re-installs only when pyproject.toml or constraints.txt changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv with $("$python" --version)..."
    "$python" -m venv .venv
fi
stamp=.venv/.lrfind-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    echo "Installing lrfind and its dependencies into .venv (torch takes a minute or two)..."
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        -c constraints.txt -e ".[dev,lightning,hf,bench]"
    touch "$stamp"
fi
