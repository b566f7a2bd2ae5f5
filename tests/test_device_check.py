"""`make device-check SMOKE=1`: the GPU device check's every path, run on the CPU at toy sizes, so it cannot rot.

The smoke run is one subprocess (benchmarks/device_check.py --smoke, into a temporary folder) shared by the
tests below; the gate and the path recorder are also checked in-process on made-up inputs, so that a broken
gate or a recorder that hides failures is caught even when every real path passes.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import device_check  # noqa: E402


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("device-check")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "device_check.py"), "--smoke", "--out-dir", str(out)],
                          capture_output=True, text=True, timeout=1800)
    report_path = out / "device-check.json"
    assert report_path.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(report_path.read_text()), out


def test_smoke_runs_every_path_ok_and_finite(smoke):
    done, report, _ = smoke
    assert report["smoke"] is True
    rows = {(r["family"], r["dtype"], r["path"]): r for r in report["paths"]}
    expected = {(family, dtype, path) for family in ("sd15", "sdxl") for dtype in ("float16", "bfloat16")
                for path in device_check.PATHS}
    assert set(rows) == expected
    problems = [f"{key}: {row['status']} {row['error']}" for key, row in rows.items()
                if row["status"] != "ok" or row.get("finite") is not True]
    assert not problems, problems
    for key, row in rows.items():
        assert row["peak_rss_mb"] > 0 and row["wall_s"] >= 0, key
        if key[2] == "invert":
            assert row["feature_dtypes"] == [f"torch.{key[1]}"], key  # recorded in the model's compute dtype
    for family in ("sd15", "sdxl"):
        for dtype in ("float16", "bfloat16"):
            for path, used in (("recorded_paper_resident", "resident"), ("recorded_paper_streamed", "streamed")):
                placement = rows[(family, dtype, path)]["placement"]
                assert placement and placement[0]["used"] == used, (family, dtype, path, placement)
    assert report["all_ok"] is True and done.returncode == 0, done.stdout[-3000:]


def test_smoke_speed_table_has_the_bench_keys_and_judged_ratios(smoke):
    _, report, _ = smoke
    speed = report["speed"]
    for key in ("matching_vs_gemm_limit", "matching_speedup_vs_published_loop", "matching_peak_extra_mb_128",
                "sampling_overhead_recorded", "sampling_overhead_live", "inversion_vs_cfg_sampling",
                "bank_mb_per_image_sd15_512", "bank_mb_per_image_sdxl_1024", "matching", "sampling", "bank"):
        assert key in speed, key
    assert [row["unet"] for row in speed["sampling"]] == ["sd15", "sdxl"]
    ratios = {r["name"]: r for r in speed["ratios"]}
    assert set(ratios) == {name for name, *_ in device_check.RATIO_GOALS}
    for ratio in ratios.values():
        assert math.isfinite(ratio["value"]) and ratio["value"] > 0
        assert ratio["pass"] == (ratio["value"] <= ratio["goal_at_most"])


def test_smoke_training_is_gated_and_decided(smoke):
    _, report, out = smoke
    training = report["training"]
    assert "error" not in training, training.get("error")
    assert training["steps"] >= 1 and training["steps_per_s"] > 0
    assert training["render"]["max_difference_vs_cpu"] == 0.0
    evaluations = training["evaluations"]
    assert evaluations and all(math.isfinite(e["pooling"]) and math.isfinite(e["injection"]) for e in evaluations)
    # The run's decision is what the gate says about its own figures.
    again = [{k: e[k] for k in ("asset", "pooling", "injection")} for e in evaluations]
    chosen = device_check.choose_snapshot(again)
    decision = training["decision"]
    assert decision["passed"] == (chosen is not None)
    assert decision["chosen"] == (chosen["asset"] if chosen else None)
    written = REPO / (decision["asset"] or decision["best_unpassed_asset"])
    if not written.is_file():
        written = Path(decision["asset"] or decision["best_unpassed_asset"])
    assert written.is_file() and written.with_suffix(".json").is_file()
    assert written.parent == out


def test_gate_takes_the_best_snapshot_that_passes_both_diagnostics():
    evaluations = [
        {"asset": "a", "pooling": 0.50, "injection": 0.20},  # injection too weak
        {"asset": "b", "pooling": 0.35, "injection": 0.40},
        {"asset": "c", "pooling": 0.31, "injection": 0.60},  # passes, strongest injection
        {"asset": "d", "pooling": 0.10, "injection": 0.90},  # pooling too weak
        {"asset": "e", "pooling": float("nan"), "injection": 0.70},
    ]
    assert device_check.choose_snapshot(evaluations)["asset"] == "c"
    assert [e["passed"] for e in evaluations] == [False, True, True, False, False]
    assert device_check.choose_snapshot([{"asset": "x", "pooling": 0.3, "injection": 0.3}])["asset"] == "x"
    assert device_check.choose_snapshot([{"asset": "y", "pooling": 0.29, "injection": 0.9}]) is None


def test_recorder_reports_exceptions_and_non_finite_results_as_failures():
    import torch

    recorder = device_check.Recorder(torch.device("cpu"))
    with recorder.path("sd15", 512, "float16", "raises") as row:
        raise TypeError("expected Half but found Float")
    with recorder.path("sd15", 512, "float16", "nan") as row:
        row["finite"] = device_check.all_finite({"samples": torch.tensor([1.0, float("nan")])})
    with recorder.path("sd15", 512, "float16", "fine") as row:
        row["finite"] = device_check.all_finite({"samples": torch.ones(2)})
    status = {r["path"]: (r["status"], r["error"]) for r in recorder.rows}
    assert status["raises"] == ("failed", "TypeError: expected Half but found Float")
    assert status["nan"][0] == "failed" and "finite" in status["nan"][1]
    assert status["fine"] == ("ok", None)


def test_the_pack_loads_with_the_device_machines_stand_in_for_pyav():
    """benchmarks/device_machine.sh stands in for PyAV on the lent GPU machine (its wheel does not fit the carry):
    ComfyUI and the pack must still load with the stand-in shadowing the real PyAV."""
    script = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "import av; assert 'device_stubs' in av.__file__, av.__file__\n"
        "from comfy_host import load_host_with_pack\n"
        "nodes, pack = load_host_with_pack('device-stub')\n"
        "print('E4E nodes:', sorted(k for k in nodes.NODE_CLASS_MAPPINGS if k.startswith('E4E_')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(REPO / "benchmarks" / "device_stubs"), str(REPO / "scripts")],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'E4E_Invert'" in done.stdout and "'E4E_KSampler'" in done.stdout, done.stdout[-2000:]
