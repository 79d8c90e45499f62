# msrcnn_fast: two commands on a fresh machine.
#   make demo   the main job on its built-in default
#   make test   lint + the test suite
# Both create .venv and build the extension when needed; afterwards only what changed is rebuilt.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export MAX_JOBS ?= 2
export CUDA_HOME ?= /usr/local/cuda

SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh') setup.py pyproject.toml
CUDA_BUILD := build/cuda

.PHONY: all build test test-aten-numerics demo bench check-cuda gpu-check wheel lint clean

all: test

$(VENV)/.requirements: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -r requirements.txt
	touch $@

# The editable install builds msrcnn_fast/_C*.so in place; objects stay in build/temp-cpu.
$(VENV)/.built: $(VENV)/.requirements $(SOURCES)
	$(PIP) install --quiet --no-build-isolation --no-deps -e .
	touch $@

build: $(VENV)/.built

lint: $(VENV)/.requirements
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: build lint
	$(PY) -m pytest tests

# The training tests once more on ATen's other CPU kernels, whose rounding differs: the plain
# (default) build always, and AVX2 where ATen would pick AVX-512. A run that trains on one
# machine kind must train on the other (CI runs this after make test).
test-aten-numerics: build
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest -q tests/engine
	if grep -q avx512f /proc/cpuinfo; then ATEN_CPU_CAPABILITY=avx2 $(PY) -m pytest -q tests/engine; fi

bench: build
	$(PY) -m pytest benchmarks

# Generates the shapes dataset (out/shapes), trains configs/shapes_demo.yaml on the CPU
# (out/shapes_demo; a second run resumes and only evaluates), prints the table, writes the plots.
demo: build
	$(PY) -m msrcnn_fast.demo $(DEMO_ARGS)

# A wheel into dist/ that installs without a compiler: the CPU kernels (every CPU build);
# FORCE_CUDA=1 adds the CUDA kernels for sm_80 and sm_90 and PTX for newer GPUs
# (TORCH_CUDA_ARCH_LIST="8.0;9.0+PTX" unless set; the build takes the CUDA objects' own folder).
wheel: $(VENV)/.requirements
	rm -rf dist
	TORCH_CUDA_ARCH_LIST="$${TORCH_CUDA_ARCH_LIST:-8.0;9.0+PTX}" $(PIP) wheel --quiet --no-build-isolation --no-deps --wheel-dir dist .
	@ls -l dist/*.whl

# On a machine with one CUDA GPU: build for its arch, CUDA tests and benchmarks, a 50-iteration
# AMP run of the demo config, the report in out/gpu-check.md (tools/gpu_check.sh); without a GPU
# it says so in one line. The project's venv where there is one, else the machine's python3.
gpu-check:
	PY=$$(if [ -x $(PY) ]; then echo $(PY); else echo python3; fi) tools/gpu_check.sh

# A FORCE_CUDA=1 build into its own folder, imported from there: fails unless every
# msrcnn::* op has a CUDA kernel registered. Runs without a GPU.
check-cuda: $(VENV)/.requirements
	FORCE_CUDA=1 $(PY) setup.py --quiet build --build-base $(CUDA_BUILD)
	PYTHONPATH=$$(echo $(CUDA_BUILD)/lib.*) $(PY) tools/check_kernels.py cuda

clean:
	rm -rf build msrcnn_fast/_C*.so $(VENV)/.built
