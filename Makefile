# The README's commands. `make demo` runs the main job; `make test` passes the tests.
# Both create the virtualenv and fetch the Kafka jars on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint system-packages unit integration e2e broker-stop clean

$(BIN)/cityops: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/cityops

demo: $(BIN)/cityops
	$(BIN)/cityops demo

lint: $(BIN)/cityops
	$(BIN)/ruff check .
	$(BIN)/mypy

system-packages:
	@bash scripts/system-packages

test: lint system-packages
	$(BIN)/cityops broker start
	$(BIN)/pytest

unit: $(BIN)/cityops
	$(BIN)/pytest -m unit

integration: $(BIN)/cityops
	$(BIN)/pytest -m integration

e2e: $(BIN)/cityops
	$(BIN)/pytest -m e2e

broker-stop: $(BIN)/cityops
	$(BIN)/cityops broker stop

clean:
	-$(BIN)/cityops broker stop
	rm -rf var
