PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint e2e-deps bench checkov

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(STAMP)

# The local host: App Service front end + Easy Auth + the relay on :7071, emulators on :7072/:7073.
run: venv
	$(BIN)/python -m devhost

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# Debian's Chromium and the npm packages of the browser and Node tests.
e2e-deps:
	bash scripts/ensure-e2e.sh

# Every test: unit, integration (real sockets), reliability, emulators, browser + Node, infrastructure (checkov).
test: venv lint e2e-deps
	$(BIN)/pytest

bench: venv
	$(BIN)/pip install --quiet -r requirements-bench.txt
	$(BIN)/python -m bench

checkov:
	bash scripts/checkov.sh
