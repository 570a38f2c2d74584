# The two commands people type on a fresh machine: `make demo` and `make test`.
# Everything else here is what those two need: a virtual environment in .venv with
# torch (CPU wheel) first, the ONNX Runtime headers for the C++ extension, then the package.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The venv's cmake and ninja come first.
export PATH := $(abspath $(VENV))/bin:$(PATH)
SHARED_DATASETS ?= $(abspath ../shared/datasets)
# An offline mirror of public datasets (see docs/datasets.md); used when the folder exists.
export EDGEACT_DATASET_MIRROR ?= $(if $(wildcard $(SHARED_DATASETS)),$(SHARED_DATASETS),)
DEMO_DIR ?= outputs/demo
# The demo trains the PushT keypoint policy (configs/train/act_pusht_keypoints.yaml) for DEMO_STEPS steps at
# batch 64, with the learning-rate schedule over those steps; docs/training.md has what it reaches.
DEMO_STEPS ?= 6000
DEMO_EPISODES ?= 20

STAMP := $(VENV)/.edgeact-deps
EXT_STAMP := $(VENV)/.edgeact-ext
CPP_SOURCES := CMakeLists.txt $(shell find cpp_ext -type f 2>/dev/null)

.PHONY: install build test cpp-test demo lint bench clean check-trt test-py310 test-aarch64

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja
	bash scripts/fetch_ort_headers.sh
	$(PY) -m pip install -q --no-build-isolation -e '.[all]'
	touch $@

# The extension is rebuilt (incrementally, in build/) whenever a C++ source changes.
$(EXT_STAMP): $(STAMP) $(CPP_SOURCES)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

install: $(EXT_STAMP)
build: $(EXT_STAMP)

cpp-test: install
	mkdir -p build
	cmake -S . -B build/ctest -G Ninja -DCMAKE_BUILD_TYPE=Release -DEDGEACT_BUILD_TESTS=ON \
	  -DPython_EXECUTABLE=$(abspath $(PY)) > build/ctest.log 2>&1 || { cat build/ctest.log; exit 1; }
	cmake --build build/ctest --parallel 2 >> build/ctest.log 2>&1 || { cat build/ctest.log; exit 1; }
	cd build/ctest && ctest --output-on-failure

test: install
	$(VENV)/bin/ruff check .
	$(MAKE) --no-print-directory cpp-test
	$(VENV)/bin/pytest

# TensorRT compile check (scripts/check_trt.sh, run by .ci/run): the TensorRT code compiled, not linked, against
# the TensorRT 10.3 and 11.1 headers in ../shared/third_party/tensorrt and the CUDA headers of the CUDA wheels.
# Needs no venv; says SKIPPED when ../shared is absent (the product never needs those headers).
check-trt:
	PYTHON=$(PYTHON) bash scripts/check_trt.sh

# The robot-computer install on Python 3.10 + numpy 1.x without torch (scripts/test_py310.sh): wheel, installed
# size of edgeact[runtime], tests/runtime in a fresh venv, one rt-run episode. Minutes; not part of `make test`.
test-py310:
	bash scripts/test_py310.sh

# The C++ core and its tests cross-compiled for aarch64 and run under qemu-user, with the aarch64 libonnxruntime of
# the onnxruntime wheel (scripts/test_aarch64.sh; installs the cross compiler and qemu with apt-get when missing).
test-aarch64:
	bash scripts/test_aarch64.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(VENV)/bin/edgeact-bench --json $(DEMO_DIR)/bench.json

demo: install
	mkdir -p $(DEMO_DIR)
	$(VENV)/bin/train-act --dataset pusht_keypoints --steps $(DEMO_STEPS) --eval_every=0 --num_threads=0 \
	  --output $(DEMO_DIR)/train $(if $(wildcard $(DEMO_DIR)/train/checkpoints/last),--resume,)
	$(VENV)/bin/export-policy $(DEMO_DIR)/train/checkpoints/last --format onnx --output $(DEMO_DIR)/policy.onnx
	$(VENV)/bin/rt-run --robot pusht-sim --model $(DEMO_DIR)/policy.onnx --episodes $(DEMO_EPISODES) --seed 0 \
	  --json $(DEMO_DIR)/rt_run.json --video $(DEMO_DIR)/rollouts.mp4
	@echo "rollout video: $(abspath $(DEMO_DIR))/rollouts.mp4 (summary: $(abspath $(DEMO_DIR))/rt_run.json)"

clean:
	rm -rf build $(VENV) third_party outputs
