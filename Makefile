# custody: `make demo` tells the whole story on 127.0.0.1; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast soak fuzz lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python demo/run.py

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

# The day in the life (tests/e2e/), longer: SOAK_ROUNDS rounds of releases for SOAK_HOSTS agents.
SOAK_ROUNDS ?= 20
SOAK_HOSTS ?= 12
soak: $(STAMP)
	CUSTODY_SOAK_ROUNDS=$(SOAK_ROUNDS) CUSTODY_SOAK_HOSTS=$(SOAK_HOSTS) \
		$(BIN)/python -m pytest -q -s --timeout=0 tests/e2e

# The fuzz tests of `make test`, longer: FUZZ_EXAMPLES (default 20000) examples per
# property and FUZZ_API_EXAMPLES (default 2000) schemathesis cases per API operation,
# without the suite's per-test time limit.
FUZZ_EXAMPLES ?= 20000
FUZZ_API_EXAMPLES ?= 2000
fuzz: $(STAMP)
	CUSTODY_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) CUSTODY_FUZZ_API_EXAMPLES=$(FUZZ_API_EXAMPLES) \
		$(BIN)/python -m pytest -n 2 -q --timeout=0 \
		tests/formats tests/intoto/test_fuzz.py tests/client/test_unpack_fuzz.py \
		tests/repository/test_api_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check conftest.py custody formats intoto keys_tooling repository client tests bench demo docs
	$(BIN)/mypy -p custody --ignore-missing-imports
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/record.py
	$(BIN)/python bench/publish.py
	$(BIN)/python bench/update.py
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/fleet.py --compare --raw 60 --pollers 4 --seconds 120
	$(BIN)/python bench/fleet.py --compare --pollers 8,32
	$(BIN)/python bench/plugins.py
	$(BIN)/python bench/reports.py
	$(BIN)/python bench/delta.py
	$(BIN)/python bench/imports.py
	$(BIN)/python bench/readme.py

clean:
	rm -rf $(VENV) build .pytest_cache
