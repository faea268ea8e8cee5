# synccp: `make demo` and `make test` install what they need into .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synccp-installed

.PHONY: demo test setup data bench study clean

$(STAMP): pyproject.toml tools/bootstrap.sh
	PYTHON=$(PYTHON) bash tools/bootstrap.sh
	touch $(STAMP)

setup: $(STAMP)

data:
	bash tools/get-data.sh

demo: $(STAMP) data
	$(BIN)/synccp pretrain --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q tests

# The CPU study of docs/results.md (138 runs, about 3.5 hours on 2 cores; finished runs are skipped)
study: $(STAMP) data
	$(BIN)/synccp sweep configs/grids/cpu_*.toml --jobs 2
	$(BIN)/synccp report runs/cpu_study --out docs/results/cpu_study

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
