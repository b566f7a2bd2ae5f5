"""Cancel and soak on the real ComfyUI server (tiny SD1.5 checkpoint, the battery's transfer graph).

- POST /interrupt during an inversion and, separately, during sampling: the run stops in that node, and a clean
  rerun gives exactly the pixels of the uninterrupted run.
- 30 runs of a small graph in one server: its resident memory grows at most 5% after warm-up.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from run_workflow import image_path, output_images, start_server  # noqa: E402
from test_server_battery import good_prompt, history, post_prompt, without_inspection  # noqa: E402
from tiny_checkpoint import CHECKPOINT_NAME, write_demo_images, write_tiny_sd15_checkpoint  # noqa: E402

STEPS = 10  # long enough that an interrupt 1 s into a node lands inside it


@pytest.fixture(scope="module")
def server():
    with start_server("cancel-base", timeout=900) as running:
        write_tiny_sd15_checkpoint(running.base / "models" / "checkpoints" / CHECKPOINT_NAME)
        write_demo_images(running.base / "input")
        yield running


def small_prompt(steps: int = STEPS, seed: int = 0, cfg: float = 2.0, skip: int = 2) -> dict:
    """The battery's transfer graph without the inspection branch; `seed` moves both inversions' seeds."""
    prompt = good_prompt()
    without_inspection(prompt)
    for node, offset in (("tinv", 0), ("rinv", 1)):
        prompt[node]["inputs"].update(steps=steps, skip=skip, seed=seed + offset)
    prompt["ks"]["inputs"]["cfg"] = cfg
    prompt["save"]["inputs"]["filename_prefix"] = "cancel"
    return prompt


def _post_json(url: str, payload: dict) -> None:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()


def run_pixels(server, prompt: dict):
    import numpy as np
    from PIL import Image

    status, body = post_prompt(server.url, copy.deepcopy(prompt))
    assert status == 200, body
    entry = history(server.url, body["prompt_id"], timeout=900)
    assert entry["status"]["status_str"] == "success", entry["status"]
    saved = [image for image in output_images(entry) if image[2] == "output"]
    assert len(saved) == 1
    return np.asarray(Image.open(image_path(server.base, saved[0])))


def interrupt_after(server, prompt: dict, delay: float) -> dict:
    """POST the prompt, POST /interrupt `delay` s after it starts running; returns the execution_interrupted data."""
    status, body = post_prompt(server.url, copy.deepcopy(prompt))
    assert status == 200, body
    prompt_id = body["prompt_id"]
    deadline = time.monotonic() + 60
    while True:
        with urllib.request.urlopen(server.url + "/queue", timeout=10) as response:
            running = json.loads(response.read())["queue_running"]
        if any(item[1] == prompt_id for item in running):
            break
        assert time.monotonic() < deadline, "the prompt never started"
        time.sleep(0.05)
    time.sleep(delay)
    _post_json(server.url + "/interrupt", {})
    entry = history(server.url, prompt_id, timeout=300)
    interrupted = [data for event, data in entry["status"]["messages"] if event == "execution_interrupted"]
    assert interrupted, f"the run was not interrupted (finished within {delay} s?): {entry['status']['status_str']}"
    return interrupted[0]


def test_interrupted_inversion_and_sampling_then_a_clean_rerun_gives_the_same_pixels(server):
    import numpy as np

    uninterrupted = run_pixels(server, small_prompt())
    # Other inversion seeds: the loaders and VAEEncode are cached, the inversions run first.
    stopped = interrupt_after(server, small_prompt(seed=5), delay=1.0)
    assert stopped["node_type"] == "E4E_Invert", stopped
    assert np.array_equal(run_pixels(server, small_prompt()), uninterrupted)
    # Another cfg: the inversions are cached, only the sampler (and decoder) run.
    stopped = interrupt_after(server, small_prompt(cfg=3.0), delay=1.0)
    assert stopped["node_type"] == "E4E_KSampler", stopped
    assert np.array_equal(run_pixels(server, small_prompt()), uninterrupted)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_thirty_runs_do_not_grow_resident_memory(server):
    """Each run has a new cfg, so the sampler (with Apply's patches and features), VAEDecode and SaveImage rerun;
    the inversions and Apply stay cached, which keeps 30 runs near a minute of CPU (4 inversion steps, 2 generated)."""
    sizes, start = [], cpu_seconds(server.process.pid)
    for i in range(30):
        prompt = small_prompt(steps=4, seed=100, cfg=2.0 + 0.01 * i)
        prompt["ks"]["inputs"]["adain_start"] = 1
        run_pixels(server, prompt)
        sizes.append(resident_mb(server.process.pid))
    warm = max(sizes[4:8])
    report = f"{[round(s) for s in sizes]} MB, {cpu_seconds(server.process.pid) - start:.0f} s of server CPU"
    print("soak:", report)
    assert sizes[-1] <= 1.05 * warm, f"resident memory grew from {warm:.0f} MB to {sizes[-1]:.0f} MB: {report}"
