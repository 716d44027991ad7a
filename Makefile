VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The FunctionRpc modules, generated from devhost/functions_host/proto/ (not committed).
RPC_PROTOS := $(shell find devhost/functions_host/proto -name '*.proto')
RPC_STAMP := devhost/functions_host/generated/.built

.PHONY: venv run test unit lint e2e-deps azurite-deps kusto-deps bench checkov

# make run turns the block list on (its table in Azurite); RELAY_BLOCKLIST_ENABLED=false make run turns it off.
RELAY_BLOCKLIST_ENABLED ?= true
RELAY_BLOCKLIST_REFRESH_S ?= 5

# One venv on Python 3.13, the version Azure Functions runs by default; an older venv is replaced.
$(STAMP): requirements.txt requirements-dev.txt
	@echo "setup: .venv on Python 3.13 with requirements-dev.txt (the first time takes a few minutes; later runs skip it)"
	python=$$(bash scripts/find-python.sh 3.13) && \
	if ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then $$python -m venv --clear $(VENV); fi
	$(BIN)/pip install --quiet --upgrade pip
	@echo "setup: installing the Python packages (quiet while pip works)"
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@
	@echo "setup: .venv is ready"

$(RPC_STAMP): $(STAMP) $(RPC_PROTOS) devhost/functions_host/build_protos.py
	@echo "setup: generating the Functions host's gRPC modules"
	$(BIN)/python -m devhost.functions_host.build_protos
	touch $@

venv: $(STAMP) $(RPC_STAMP)

# The local host: App Service front end + Easy Auth + the relay on :7071, emulators on :7072/:7073, Azurite on a free port.
# DEVHOST_RUNTIME=worker serves the relay through the Functions Python worker instead of in-process.
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

# Microsoft's Kusto language service (npm), which checks every KQL query of infra/kql offline.
kusto-deps:
	bash scripts/ensure-kusto.sh

# Every test: unit, integration (real sockets), reliability, emulators, browser + Node, infrastructure (checkov, KQL).
# About 10 minutes on two cores; the 15 slowest tests are listed at the end.
test: venv lint e2e-deps azurite-deps kusto-deps
	$(BIN)/pytest --durations=15

# The edit loop: unit and emulator tests and the import rules, a subset of make test (about a minute); make lint apart.
unit: venv
	$(BIN)/pytest --durations=5 tests/test_import_graph.py tests/unit tests/emulator

bench: venv azurite-deps
	$(BIN)/pip install --quiet -r requirements-bench.txt
	$(BIN)/python -m bench

checkov:
	bash scripts/checkov.sh
