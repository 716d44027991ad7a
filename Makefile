PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint e2e-deps azurite-deps bench checkov

# make run turns the block list on (its table in Azurite); RELAY_BLOCKLIST_ENABLED=false make run turns it off.
RELAY_BLOCKLIST_ENABLED ?= true
RELAY_BLOCKLIST_REFRESH_S ?= 5

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(STAMP)

# The local host: App Service front end + Easy Auth + the relay on :7071, emulators on :7072/:7073, Azurite on a free port.
run: venv azurite-deps
	RELAY_BLOCKLIST_ENABLED=$(RELAY_BLOCKLIST_ENABLED) RELAY_BLOCKLIST_REFRESH_S=$(RELAY_BLOCKLIST_REFRESH_S) $(BIN)/python -m devhost

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# Debian's Chromium and the npm packages of the browser and Node tests.
e2e-deps:
	bash scripts/ensure-e2e.sh

# Azurite (npm), the local table service of the block list and the token budgets.
azurite-deps:
	bash scripts/ensure-azurite.sh

# Every test: unit, integration (real sockets), reliability, emulators, browser + Node, infrastructure (checkov).
test: venv lint e2e-deps azurite-deps
	$(BIN)/pytest

bench: venv azurite-deps
	$(BIN)/pip install --quiet -r requirements-bench.txt
	$(BIN)/python -m bench

checkov:
	bash scripts/checkov.sh
