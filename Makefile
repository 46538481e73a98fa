# queuectl: `make demo` tours the product; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test chaos install clean

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

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
