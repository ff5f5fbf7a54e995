# The two commands a newcomer needs:  make demo   and   make test
VENV ?= .venv
BIN := $(VENV)/bin
KEYS ?= keys

.PHONY: demo test lint typecheck unit bench fuzz setup clean

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

## Run each atheris/libFuzzer target for FUZZ_SECONDS (not part of make test). Inputs that
## crash are written to fuzz/artifacts/; the growing corpus is kept in fuzz/corpus/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= smev_transform readers
fuzz: setup
	$(BIN)/python fuzz/seeds.py fuzz/corpus/seeds
	mkdir -p fuzz/artifacts
	set -e; for target in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$target; \
	  $(BIN)/python fuzz/fuzz_$$target.py -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	    -rss_limit_mb=2048 -dict=fuzz/xml.dict -print_final_stats=1 \
	    -artifact_prefix=fuzz/artifacts/$$target- fuzz/corpus/$$target fuzz/corpus/seeds; \
	done

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
