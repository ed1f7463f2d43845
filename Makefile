# Two commands on a fresh machine: `make claims` (the main job) and `make test` (the tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out
STAMP  := $(VENV)/.installed

.PHONY: install claims test sweep portability lint format bench clean

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

## A sweep (default: the receiver-strength ladder, issue #29): every claim on every point, then
## its picture (claims x points matrix, per-axis figures, heatmaps) in $(OUT)/<sweep name>/.
## Claims that fail on a point are the sweep's data, not an error: only pytest errors (exit >= 2)
## fail the target. Not part of `make claims` (a cold ladder costs about 10 minutes on 2 cores).
SWEEP ?= protocols/sweeps/ladder.toml
sweep: install
	@name=$$($(BIN)/python -c "import sys; from harness.spec.sweep import load_sweep; print(load_sweep(sys.argv[1]).name)" '$(SWEEP)') || exit 2; \
	mkdir -p $(OUT)/$$name; \
	$(BIN)/python -m pytest claims --source '$(SWEEP)' -n auto --claims-status $(OUT)/$$name/claims_status.json; status=$$?; \
	$(BIN)/python -m harness sweep '$(SWEEP)' --out $(OUT)/$$name --status $(OUT)/$$name/claims_status.json || status=2; \
	[ $$status -le 1 ]

## The tests: lint, format check, type check, unit/property tests and the claims suite
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n auto

## The runner-backed claims recomputed from an empty cache on an emulated other machine
## (scalar ATen kernels, SSE4.1 oneDNN, SSE4.2 MKL): snapshots and findings must hold
portability: install
	@mkdir -p $(OUT)
	cache=$$(mktemp -d); \
	HARNESS_CACHE=$$cache ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 \
	MKL_ENABLE_INSTRUCTIONS=SSE4_2 $(BIN)/python -m pytest claims --source mini -n 2 \
	  -p no:cacheprovider --claims-status $(OUT)/claims_status_portability.json; \
	status=$$?; rm -rf $$cache; exit $$status

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf $(OUT) .cache .pytest_cache .hypothesis
