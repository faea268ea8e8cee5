# synccp: `make demo` and `make test` install what they need into .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synccp-installed

.PHONY: demo test setup data bench clean

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

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
