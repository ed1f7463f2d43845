# Two commands on a fresh machine: `make claims` (the main job) and `make test` (the tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out
STAMP  := $(VENV)/.installed

.PHONY: install claims test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job: every claim on every available source, the claim table, results and figures in $(OUT)/
claims: install
	@mkdir -p $(OUT)
	$(BIN)/python -m pytest claims -n auto --claims-status $(OUT)/claims_status.json; status=$$?; \
	$(BIN)/python -m harness report --out $(OUT) || status=1; \
	$(BIN)/python -m harness claims --status $(OUT)/claims_status.json; \
	echo "results, tables and figures: $(OUT)/<source>/"; exit $$status

## The tests: lint, format check, unit/property tests and the claims suite
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n auto

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf $(OUT) .cache .pytest_cache .hypothesis
