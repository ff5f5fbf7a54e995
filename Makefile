# The two commands a newcomer needs:  make demo   and   make test
VENV ?= .venv
BIN := $(VENV)/bin
KEYS ?= keys

.PHONY: demo test lint typecheck unit bench setup clean

$(VENV)/.installed: pyproject.toml scripts/bootstrap.sh
	./scripts/bootstrap.sh

setup: $(VENV)/.installed

## Set up, make the dev PKI if missing, and run the demo on the embedded default.
demo: setup
	$(BIN)/smevbus keys init --dir $(KEYS)
	$(BIN)/smevbus demo --keys $(KEYS)

## Set up and run everything CI runs: ruff, mypy --strict, the whole pytest suite.
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict gateway adapters
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/crypto.py
	$(BIN)/python benchmarks/adapters.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
