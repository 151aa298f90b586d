# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch wheels are large: the train extra is installed for tests, not for the demo.
TORCH_PINS ?=

.PHONY: demo test bench lint clean venv

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.all: $(VENV)/.core
	$(PIP) install -q -e '.[train,aug,dist,dev,caffe,interop]' $(TORCH_PINS)
	touch $@

venv: $(VENV)/.core

demo: $(VENV)/.core
	bash examples/demo.sh $(VENV)/bin/dataprep

test: $(VENV)/.all
	$(PY) -m pytest -q tests

# BENCH_ARGS: e.g. --quick (a smoke run), --photos DIR, --only split loader, --output FILE
bench: $(VENV)/.all
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

lint: $(VENV)/.all
	$(VENV)/bin/ruff check dataprep tests benchmarks

clean:
	rm -rf $(VENV) out
