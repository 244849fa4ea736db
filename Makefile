# CityPlus — two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Messages a second of the city simulator `make run` starts inside the server (0: none); see docs/modules/iot.md
SIMULATE_RATE ?= 2

.PHONY: run test lint typecheck bench clean frontend

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("CityPlus needs Python >= 3.11" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

# Front-end libraries (htmx) come from the npm registry, pinned in package-lock.json. The portal works
# without them (htmx is progressive enhancement), so a machine without npm still runs.
frontend:
	@if [ -f package-lock.json ] && command -v npm >/dev/null 2>&1; then \
	  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	    npm ci --no-audit --no-fund --loglevel=error; fi; \
	else echo "npm not found: serving pages without htmx"; fi

run: $(VENV)/.installed frontend
	$(BIN)/cityplus db upgrade
	$(BIN)/cityplus demo load
	@echo "CityPlus portal: http://$(HOST):$(PORT)"
	CITYPLUS_IOT_SIMULATE_RATE=$(SIMULATE_RATE) $(BIN)/cityplus serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev frontend
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var node_modules
