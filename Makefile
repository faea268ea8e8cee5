# synccp: `make demo` and `make test` install what they need into .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synccp-installed

.PHONY: demo test lint setup data bench study smoke-study clean

$(STAMP): pyproject.toml tools/bootstrap.sh
	PYTHON=$(PYTHON) bash tools/bootstrap.sh
	touch $(STAMP)

setup: $(STAMP)

data:
	bash tools/get-data.sh

demo: $(STAMP) data
	$(BIN)/synccp pretrain --out runs/demo-$$(date +%Y%m%d-%H%M%S)

# ruff (rules and exceptions in pyproject.toml) and mypy on the public API; `make test` runs it first.
lint: $(STAMP)
	$(BIN)/ruff check src tests tools benchmarks examples
	$(BIN)/mypy

test: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q tests

# The CPU study of docs/results.md at its protocol (108 runs, more than a day of a 2-core CPU).
# It says how many runs remain and about how long they take; each finished run's small result
# files are committed under studies/cpu_protocol as it finishes, so it resumes from a clean clone.
# `make study HOURS=2.5` starts only the runs expected to end within 2.5 hours (a session's end).
study: $(STAMP) data
	$(BIN)/synccp sweep configs/grids/cpu_protocol.toml --jobs 2 --commit $(if $(HOURS),--hours $(HOURS))
	$(BIN)/synccp report studies/cpu_protocol --out docs/results/cpu_protocol

# The old 60-step smoke study (networks that have not learned yet: plumbing, not evidence)
smoke-study: $(STAMP) data
	$(BIN)/synccp sweep configs/grids/cpu_study.toml configs/grids/cpu_claims.toml configs/grids/cpu_precision.toml --jobs 2
	$(BIN)/synccp report runs/cpu_study --out docs/results/cpu_study

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
