PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint bench

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(STAMP)

run: venv
	$(BIN)/python -m devhost

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

test: venv lint
	$(BIN)/pytest
