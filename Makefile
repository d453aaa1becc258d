# One command to run, one to test: both set themselves up on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test bench install clean

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) server.py

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) -m bench.call_bench

clean:
	rm -rf $(VENV) data test-artifacts
