"""Cancel and soak on the real ComfyUI server (tiny SD1.5 checkpoint, the battery's transfer graph).

- POST /interrupt during an inversion and, separately, during sampling (sent when the node reports its first
  progress step over the server's websocket): the run stops in that node, and a clean
  rerun gives exactly the pixels of the uninterrupted run.
- 30 runs of a small graph in one server, the sampler rerun every time and the inversions every other
  time: its resident memory grows at most 5% after warm-up.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from test_server_battery import good_prompt, history, run_saved, tiny_sd15_server, without_inspection  # noqa: E402

STEPS = 10  # the interrupt is sent at a node's first progress step, so it lands inside it


@pytest.fixture(scope="module")
def server():
    with tiny_sd15_server("cancel-base") as running:
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


def run_pixels(server, prompt: dict):
    return run_saved(server, prompt, timeout=900)


async def _interrupt_on_progress(url: str, prompt: dict, nodes: tuple) -> str:
    """POST the prompt and POST /interrupt as soon as one of `nodes` reports its first progress step."""
    import aiohttp

    client_id = uuid.uuid4().hex
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url.replace("http", "ws", 1) + f"/ws?clientId={client_id}") as ws:
            async with session.post(url + "/prompt", json={"prompt": prompt, "client_id": client_id}) as response:
                body = await response.json()
                assert response.status == 200, body
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(message.data)
                if event["type"] == "progress" and event["data"].get("node") in nodes:
                    async with session.post(url + "/interrupt", json={}):
                        return body["prompt_id"]
    raise AssertionError(f"no progress from {nodes}")


def interrupt_in(server, prompt: dict, nodes: tuple) -> dict:
    """Run the prompt, interrupt it inside one of `nodes` (at its first progress step); the execution_interrupted data."""
    prompt_id = asyncio.run(asyncio.wait_for(_interrupt_on_progress(server.url, copy.deepcopy(prompt), nodes), 300))
    entry = history(server.url, prompt_id, timeout=300)
    interrupted = [data for event, data in entry["status"]["messages"] if event == "execution_interrupted"]
    assert interrupted, f"the run was not interrupted: {entry['status']['status_str']}"
    return interrupted[0]


def test_interrupted_inversion_and_sampling_then_a_clean_rerun_gives_the_same_pixels(server):
    import numpy as np

    uninterrupted = run_pixels(server, small_prompt())
    # Other inversion seeds: the loaders and VAEEncode are cached, the inversions run first.
    stopped = interrupt_in(server, small_prompt(seed=5), ("tinv", "rinv"))
    assert stopped["node_type"] == "E4E_Invert", stopped
    assert np.array_equal(run_pixels(server, small_prompt()), uninterrupted)
    # Another cfg: the inversions are cached, only the sampler (and decoder) run.
    stopped = interrupt_in(server, small_prompt(cfg=3.0), ("ks",))
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
    every other run has new inversion seeds too, so both inversions and Apply rerun and replace the cached ones
    (4 inversion steps, 2 generated)."""
    sizes, start = [], cpu_seconds(server.process.pid)
    for i in range(30):
        prompt = small_prompt(steps=4, seed=100 + 2 * (i // 2), cfg=2.0 + 0.01 * i)
        prompt["ks"]["inputs"]["adain_start"] = 1
        run_pixels(server, prompt)
        sizes.append(resident_mb(server.process.pid))
    warm = max(sizes[4:8])
    report = f"{[round(s) for s in sizes]} MB, {cpu_seconds(server.process.pid) - start:.0f} s of server CPU"
    print("soak:", report)
    assert sizes[-1] <= 1.05 * warm, f"resident memory grew from {warm:.0f} MB to {sizes[-1]:.0f} MB: {report}"
