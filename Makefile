# queuectl: `make demo` tours the product; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

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

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
