# queuectl: `make demo` tours the product; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test chaos campaign bench bench-peers install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "queuectl needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@$(BIN)/python -m compileall -q src >/dev/null
	$(BIN)/python scripts/demo.py

# Two test processes (the machine's two cores; most tests wait on subprocesses).
# Byte-compile first: with PYTHONDONTWRITEBYTECODE set (as on CI machines) every
# `queuectl` call would otherwise recompile the package, ~30 ms each.
test: $(STAMP)
	@$(BIN)/python -m compileall -q src >/dev/null
	$(BIN)/python -m pytest -q -n 2

# The long chaos run: 2,000 jobs under random SIGKILLs, on SQLite and (when
# QUEUECTL_TEST_PG_URL or the local server answers) PostgreSQL. About 3 minutes.
PG_URL ?= $(or $(QUEUECTL_TEST_PG_URL),postgresql://postgres@127.0.0.1:5432/test)
chaos: $(STAMP)
	$(BIN)/python tests/chaos/chaos.py --jobs 2000 --seconds 600
	@if $(BIN)/python -c "import psycopg; psycopg.connect('$(PG_URL)').close()" 2>/dev/null; then \
		$(BIN)/python tests/chaos/chaos.py --jobs 2000 --seconds 600 --db '$(PG_URL)?schema=queuectl_chaos_'$$$$; \
	else echo "chaos: no PostgreSQL at $(PG_URL): skipped"; fi

# The reliability campaign at the issue's sizes (CI runs the smaller defaults):
# 500 x 50-step model runs per store, 20 crashes per point, 1,000 killed enqueuers,
# 10,000 fuzzed inputs, soak-size hygiene. Takes the better part of an hour.
campaign: $(STAMP)
	QUEUECTL_MODEL_EXAMPLES=500 QUEUECTL_CRASH_RUNS=20 QUEUECTL_DURABILITY_RUNS=1000 \
	QUEUECTL_FUZZ_EXAMPLES=10000 QUEUECTL_SOAK=1 $(BIN)/python -m pytest -q -n 2 \
		tests/store/test_store_model.py tests/e2e/test_crash_points.py \
		tests/e2e/test_durability.py tests/e2e/test_hostile_input.py tests/worker/test_hygiene.py

# Performance: queuectl's own figures (drain, pickup, bulk enqueue, one CLI call, a
# 1,000,000-row table, idle cost), min / median / max of 3 runs, raw results in
# benchmarks/results/. bench-peers runs the same workloads on task-spooler, Huey, RQ
# and procrastinate, installed into benchmarks/.peers-venv. See docs/performance.md.
bench: $(STAMP)
	@$(BIN)/python -m compileall -q src >/dev/null
	$(BIN)/python benchmarks/bench.py

bench-peers: $(STAMP)
	@$(BIN)/python -m compileall -q src >/dev/null
	$(BIN)/python benchmarks/bench.py --peers

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
