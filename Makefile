# One command to run, one to test: both set themselves up on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test bench install clean install-llama run-llama test-llama

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

# The opt-in in-process LLM (docs/local-llm.md): llama-cpp-python built from source, without what a call never uses.
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_SERVER=OFF

$(VENV)/.llama: requirements-llama.lock $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install -q --no-deps --require-hashes -r requirements-llama.lock
	touch $@

install-llama: $(VENV)/.llama

run-llama: install-llama
	LOCAL_LLM=llama-cpp $(PY) server.py

test-llama: install-llama
	$(PY) -m pytest -q -m llama

run: install
	$(PY) server.py

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) -m bench.call_bench

clean:
	rm -rf $(VENV) data test-artifacts
