# Two commands do all set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/demo

.PHONY: test check demo demo-full venv bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev,sky]'
	touch $(STAMP)

venv: $(STAMP)

# static checks first (seconds), then the doctests of every module in src/, then the suite
check: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: check
	$(BIN)/python -m pytest -q --doctest-modules src/lensaudit
	$(BIN)/python -m pytest -q tests $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/lensaudit demo configs/demo.yaml --run-dir $(RUN_DIR)

# the demo plus the issue-20 experiments beyond its 15-minute budget (ensemble member, mining round)
demo-full: $(STAMP)
	$(BIN)/lensaudit demo configs/demo-full.yaml --run-dir runs/demo-full

# the performance benchmarks, each measuring its reference in the same run, and closure_criteria (committed
# records only); the selection diagnostics (closure_*.py, psf_stars.py, realism_colour.py, members_selection.py)
# read a finished run and take its directory: `python benchmarks/NAME.py RUN` (docs/selection.md)
BENCH := lensing catalog cutouts sky train demo closure_criteria

bench: $(STAMP)
	for b in $(BENCH); do $(BIN)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
