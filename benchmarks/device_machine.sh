#!/usr/bin/env bash
# `make device-check` on a lent GPU machine, which has Python 3.12 with torch but no package index: install the
# wheels that `make device-wheels` put in .whl/ (carried along), stand in for PyAV where it is missing (its wheel
# does not fit the 64 MiB the tool carries; the check opens no video), run the check, copy its files to $OUT.
#   device tool: run(command="bash benchmarks/device_machine.sh", carry=[".whl"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import av" 2>/dev/null || export PYTHONPATH="$PYTHONPATH:$PWD/benchmarks/device_stubs"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONUNBUFFERED=1 exec python3 benchmarks/device_check.py --copy-to "${OUT:-benchmarks/results}" "$@"
