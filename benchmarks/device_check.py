"""`make device-check`: every path of the pack, the speed table and creature training, on a GPU, in one command.

    python benchmarks/device_check.py [--budget-s 540] [--out-dir benchmarks/results]     # an NVIDIA H100 / H200
    python benchmarks/device_check.py --smoke                                               # the same on the CPU, toy sizes

Three sections, each recorded in OUT_DIR/device-check.json (with the seconds it took):

1. paths: full-size SD1.5 (512 px) and SDXL (1024 px) UNets with seeded random weights (benchmarks/bench.py's
   build_model), in fp16 and bf16, through the pack's nodes in-process (6 steps, skip 2): Invert (three images);
   "recorded at inversion" + "paper" with the feature rows resident on the GPU and forced to stream from host
   memory; "live branches" + "published code"; "rearrange values only"; the multi-object Apply (two
   E4E_TransferObject + E4E_ApplyEyeForEyeObjects); Replay Pieces driving ComfyUI's SamplerCustomAdvanced. Per path:
   status (an exception is a failure with its message; the next path runs), every result finite, the
   placement the transfer used, peak GPU memory (torch.cuda.max_memory_allocated, reset per path), peak host
   RSS, seconds.
2. speed: bench.py --gpu's rows (the same keys, benchmarks/bench.py's bench_all) on the fp16 models, and the
   ratios against plain sampling timed in the same run with their goals: SDXL 1024 recorded <= 1.2x, SD1.5 512
   recorded <= 1.1x, live branches <= 1.6x.
3. training: quality/train_creatures.py --twins (seed 0) on the GPU for the minutes left of --budget-s, EMA
   snapshots by wall time, each gated by the pooling and the injection (decoder layers) of quality/diagnostics.py
   at t 461, both >= 0.3; the best snapshot that passes is written to
   OUT_DIR/creatures_gpu.safetensors with its training record (.json); when none passes, the best one is kept
   as creatures_gpu_unpassed.safetensors instead, so it can be studied on a CPU.

--smoke runs every one of these paths on the CPU at toy sizes (tiny UNets of the same families, a few training
steps, two gating pairs) in about a minute: tests/test_device_check.py runs it, so the GPU command cannot rot.
The exit status is 0 when every path is ok, else 1.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "benchmarks"))

import bench  # noqa: E402

PATHS = ("invert", "recorded_paper_resident", "recorded_paper_streamed", "live_published", "values_only",
         "multi_object", "replay_pieces_custom_advanced")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
# name, run in bench's sampling rows, key of that row, goal (at most)
RATIO_GOALS = (("sdxl_1024_recorded_over_plain", "sdxl", "e4e_over_plain", 1.2),
               ("sd15_512_recorded_over_plain", "sd15", "e4e_over_plain", 1.1),
               ("sd15_512_live_over_plain", "sd15", "e4e_live_over_plain", 1.6),
               ("sdxl_1024_live_over_plain", "sdxl", "e4e_live_over_plain", 1.6))
GATE = {"timestep": 461, "pooling_at_least": 0.3, "injection_at_least": 0.3, "layers": "decoder (the method)"}
ASSET_NAME = "creatures_gpu"


# ----------------------------------------------------------------------------------------------- sizes

def tiny_sd15_config():
    """SD1.5's family and layout rules at toy widths: attention at the two finest levels, none at the coarsest."""
    return {**bench.sd15_config(), "model_channels": 32, "num_res_blocks": [1, 1, 1], "channel_mult": [1, 2, 2],
            "transformer_depth": [1, 1, 0], "transformer_depth_output": [1, 1, 1, 1, 0, 0], "transformer_depth_middle": 1,
            "context_dim": 64, "num_heads": 4}


def tiny_sdxl_config():
    """SDXL's family (pooled output, size embedding) and layout rules at toy widths: no attention at the finest level."""
    return {**bench.sdxl_config(), "model_channels": 32, "num_res_blocks": [1, 1, 1], "channel_mult": [1, 2, 2],
            "transformer_depth": [0, 1, 2], "transformer_depth_output": [0, 0, 1, 1, 2, 2], "transformer_depth_middle": 1,
            "context_dim": 64, "num_head_channels": 16}


def families(smoke: bool):
    """(name, UNet config, latent side, image side in px)."""
    if smoke:
        return [("sd15", tiny_sd15_config(), 16, 128), ("sdxl", tiny_sdxl_config(), 16, 128)]
    return [("sd15", bench.sd15_config(), 64, 512), ("sdxl", bench.sdxl_config(), 128, 1024)]


def speed_plan(smoke: bool):
    if not smoke:
        return bench.gpu_plan()
    return dict(runs=[("sd15", tiny_sd15_config(), 16), ("sdxl", tiny_sdxl_config(), 16)], steps=6, skip=2,
                schedule=bench.TransferSchedule(start=1, refresh_every=2, refresh_until=3), adain=2)


# ----------------------------------------------------------------------------------------------- measuring

class HostPeak:
    """Peak resident memory of this process since reset(): the kernel's high-water mark (VmHWM, reset through
    /proc/self/clear_refs) where Linux allows that, else the largest RSS a 10 ms sampler saw."""

    def __init__(self):
        import psutil

        self._process = psutil.Process()
        self.exact = self._clear()
        self._seen = 0
        if not self.exact:
            threading.Thread(target=self._sample, daemon=True).start()

    @staticmethod
    def _clear() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return Path("/proc/self/status").exists()
        except OSError:
            return False

    def _sample(self):
        while True:
            self._seen = max(self._seen, self._process.memory_info().rss)
            time.sleep(0.01)

    def reset(self) -> None:
        if self.exact:
            self._clear()
        self._seen = self._process.memory_info().rss

    def peak_mb(self) -> float:
        if self.exact:
            match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
            return int(match.group(1)) / 1024
        return max(self._seen, self._process.memory_info().rss) / 2**20


def tensors_in(value):
    """Every tensor inside a node output (dicts, tuples, inversions, feature banks)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from tensors_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from tensors_in(v)
    elif hasattr(value, "noise_maps") and hasattr(value, "features"):  # an inversion
        yield from (value.latents, value.noise_maps, value.reconstruction)
        yield from value.features.features.values()


def all_finite(outputs) -> bool:
    tensors = [t for t in tensors_in(outputs) if t.is_floating_point()]
    return bool(tensors) and all(bool(torch.isfinite(t).all()) for t in tensors)


class Recorder:
    """Runs one path at a time and records what the JSON says about it."""

    def __init__(self, device):
        self.device, self.rows, self.host = device, [], HostPeak()

    @contextlib.contextmanager
    def path(self, family, size_px, dtype_name, name):
        row = {"family": family, "size_px": size_px, "dtype": dtype_name, "path": name, "status": "ok", "error": None}
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.host.reset()
        start = time.perf_counter()
        try:
            yield row
        except Exception as error:  # recorded; the next path runs
            row.update(status="failed", error=f"{type(error).__name__}: {error}",
                       traceback=traceback.format_exc(limit=-6).splitlines()[-12:])
        finally:
            row["peak_gpu_mb"] = None
            if self.device.type == "cuda":
                try:
                    torch.cuda.synchronize(self.device)
                    row["peak_gpu_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
                except Exception as error:  # a broken CUDA context: the path has failed already or fails now
                    row.update(status="failed", error=row["error"] or f"{type(error).__name__}: {error}")
            row["peak_rss_mb"] = self.host.peak_mb()
            row["wall_s"] = time.perf_counter() - start
            if row["status"] == "ok" and not row.get("finite", False):
                row.update(status="failed", error=row.get("error") or "a result is not finite (NaN or inf)")
            self.rows.append(row)
            print(f"path {family} {size_px}px {dtype_name:8s} {name:30s} {row['status']:6s} {row['wall_s']:6.1f}s "
                  f"gpu {row['peak_gpu_mb'] or 0:8.0f} MB  rss {row['peak_rss_mb']:7.0f} MB"
                  + (f"  {row['error']}" if row["error"] else ""), flush=True)


@contextlib.contextmanager
def placement(pack, force=None):
    """Watch (and with `force`, decide) where a recorded transfer keeps its feature rows.

    nodes/bank_placement.fits_on_device is what the transfer asks at its first model call; here it is asked
    through a wrapper for the duration of one path, so that the streamed path runs on a GPU with room to
    spare. Users' runs never pass through this. Yields the list of (what the pack decided, what was used).
    """
    module = sys.modules[f"{pack.__name__}.nodes.bank_placement"]
    original, decisions = module.fits_on_device, []

    def decide(device, nbytes, base_model, x_shape):
        natural = original(device, nbytes, base_model, x_shape)
        used = natural if force is None else force
        decisions.append({"device": str(device), "bytes": int(nbytes), "pack_decided": "resident" if natural else "streamed",
                          "used": "resident" if used else "streamed"})
        return used

    module.fits_on_device = decide
    try:
        yield decisions
    finally:
        module.fits_on_device = original


# ----------------------------------------------------------------------------------------------- section 1: paths

def run_paths(host_nodes, pack, recorder, model, family, size_px, dtype_name, config, latent_side, smoke_steps):
    """Every path on one model; rows go to recorder."""
    mapping = host_nodes.NODE_CLASS_MAPPINGS
    run = lambda node_id, **kw: mapping[node_id].execute(**kw).result  # noqa: E731
    steps, skip = smoke_steps
    schedule = dict(start=1, end=-1, refresh_every=2, refresh_until=3)
    adain_start, cfg = 2, 2.5
    pooled = bool(config.get("adm_in_channels"))
    positive, negative = bench.conditioning(1, config["context_dim"], pooled), bench.conditioning(2, config["context_dim"], pooled)
    g = torch.Generator().manual_seed(3)
    latents = [{"samples": torch.randn(1, 4, latent_side, latent_side, generator=g) * 5} for _ in range(3)]
    image = latent_side * 8
    left = torch.zeros(1, image, image)
    left[..., : image // 2] = 1.0
    right = 1.0 - left
    model_dtype = model.model.get_dtype()
    inversions = {}
    label = (family, size_px, dtype_name)

    with recorder.path(*label, "invert") as row:
        for k, name in enumerate(("target", "reference", "reference2")):
            (inversions[name],) = run("E4E_Invert", model=model, positive=positive, negative=negative, latent=latents[k],
                                      steps=steps, skip=skip, cfg=3.5, seed=7, scheduler="ddim_uniform")
        feature_dtypes = sorted({str(t.dtype) for inv in inversions.values() for t in inv.features.features.values()})
        row.update(finite=all_finite(list(inversions.values())), feature_dtypes=feature_dtypes,
                   layers=len(inversions["target"].features.layers),
                   feature_mb=sum(inv.features.nbytes for inv in inversions.values()) / 2**20)
        if feature_dtypes != [str(model_dtype)]:
            raise TypeError(f"features recorded as {feature_dtypes}, the model computes in {model_dtype}")
    target, reference, reference2 = (inversions.get(k) for k in ("target", "reference", "reference2"))

    def need_inversions():
        if target is None or reference is None or reference2 is None:
            raise RuntimeError("skipped: the invert path failed")

    def apply(**options):
        (patched,) = run("E4E_ApplyEyeForEye", model=model, reference_inversion=reference, target_inversion=target,
                         **{**schedule, "mode": "rearrange features (q, k, v)", **options})
        return patched

    def sample(patched, **options):
        return run("E4E_KSampler", model=patched, positive=positive, negative=negative, target_inversion=target,
                   cfg=cfg, adain_start=adain_start, **({"reference_inversion": reference} | options))

    for name, force in (("recorded_paper_resident", True), ("recorded_paper_streamed", False)):
        with recorder.path(*label, name) as row, placement(pack, force) as decisions:
            need_inversions()
            out = sample(apply(feature_source="recorded at inversion", behaviour="paper"))
            row.update(finite=all_finite(out), placement=decisions[:1], placement_calls=len(decisions))
            if not decisions:
                raise RuntimeError("the transfer never asked where to keep its features (bank_placement not consulted)")

    with recorder.path(*label, "live_published") as row:
        need_inversions()
        out = sample(apply(feature_source="live branches", behaviour="published code"))
        row.update(finite=all_finite(out))

    with recorder.path(*label, "values_only") as row, placement(pack) as decisions:
        need_inversions()
        out = sample(apply(mode="rearrange values only", feature_source="recorded at inversion", behaviour="paper"))
        row.update(finite=all_finite(out), placement=decisions[:1])

    with recorder.path(*label, "multi_object") as row, placement(pack) as decisions:
        need_inversions()
        (objects,) = run("E4E_TransferObject", reference_inversion=reference, target_mask=left, reference_mask=left)
        (objects,) = run("E4E_TransferObject", reference_inversion=reference2, target_mask=right, reference_mask=right,
                         objects=objects)
        (patched,) = run("E4E_ApplyEyeForEyeObjects", model=model, target_inversion=target, objects=objects,
                         **schedule, mode="rearrange features (q, k, v)")
        out = run("E4E_KSampler", model=patched, positive=positive, negative=negative, target_inversion=target,
                  objects=objects, cfg=cfg, adain_start=adain_start)
        row.update(finite=all_finite(out), objects=len(objects), placement=decisions[:1])

    with recorder.path(*label, "replay_pieces_custom_advanced") as row, placement(pack) as decisions:
        need_inversions()
        noise, sampler, sigmas, latent = run("E4E_ReplayPieces", target_inversion=target, reference_inversion=reference,
                                             adain_start=adain_start)
        (guider,) = run("CFGGuider", model=apply(), positive=positive, negative=negative, cfg=cfg)
        out = run("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas, latent_image=latent)
        row.update(finite=all_finite(out), placement=decisions[:1])


def section_paths(host_nodes, pack, device, smoke, keep_fp16):
    """Returns (rows, {family: fp16 ModelPatcher} when keep_fp16)."""
    recorder, kept = Recorder(device), {}
    smoke_steps = (6, 2)
    for family, config, latent_side, size_px in families(smoke):
        fp16_model = model = None
        for dtype_name, dtype in DTYPES.items():
            start = time.perf_counter()
            try:
                weights = None if fp16_model is None else fp16_model.model.diffusion_model.state_dict()
                model = bench.build_model(host_nodes, config, dtype, device, weights=weights)
            except Exception as error:
                for name in PATHS:
                    recorder.rows.append({"family": family, "size_px": size_px, "dtype": dtype_name, "path": name,
                                          "status": "failed", "error": f"building the model: {type(error).__name__}: {error}"})
                continue
            params = sum(p.numel() for p in model.model.diffusion_model.parameters())
            print(f"model {family} {dtype_name}: {params / 1e6:.0f} M parameters, built in {time.perf_counter() - start:.1f}s",
                  flush=True)
            try:
                run_paths(host_nodes, pack, recorder, model, family, size_px, dtype_name, config, latent_side, smoke_steps)
            except Exception as error:  # outside any one path (the paths not recorded count as failed)
                recorder.rows.append({"family": family, "size_px": size_px, "dtype": dtype_name, "path": "setup",
                                      "status": "failed", "error": f"{type(error).__name__}: {error}"})
            if dtype is torch.float16:
                fp16_model = model
        if keep_fp16 and fp16_model is not None:
            kept[family] = fp16_model
        del fp16_model, model
        free_models()
    return recorder.rows, kept


def free_models():
    import comfy.model_management

    gc.collect()
    comfy.model_management.cleanup_models_gc()
    comfy.model_management.soft_empty_cache()


# ----------------------------------------------------------------------------------------------- section 2: speed

def section_speed(host_nodes, device, smoke, models):
    """bench.py --gpu's rows in fp16 on the paths section's fp16 models (smoke: the toy ones, on the CPU)."""
    name = "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device)
    results = bench.bench_all(host_nodes, device, torch.float16, name, speed_plan(smoke), quick=smoke, models=models)
    rows = {row["unet"]: row for row in results["sampling"]}
    results["ratios"] = [
        {"name": ratio, "value": rows[run][key], "goal_at_most": goal, "pass": bool(rows[run][key] <= goal)}
        for ratio, run, key, goal in RATIO_GOALS if run in rows
    ]
    for ratio in results["ratios"]:
        print(f"ratio {ratio['name']:32s} {ratio['value']:.3f}  goal <= {ratio['goal_at_most']}  "
              f"{'pass' if ratio['pass'] else 'FAIL'}", flush=True)
    return results


# ----------------------------------------------------------------------------------------------- section 3: training

def gate_snapshot(asset: Path, pairs: int) -> dict:
    """The two diagnostics' own functions at GATE's timestep, on held-out creatures (as their commands draw them)."""
    from quality.diagnostics import LAYER_SETS, diagnostic_setup, per_timestep, pooling, strength

    ts = GATE["timestep"]
    patcher, t, r = diagnostic_setup(asset, pairs)
    pool = per_timestep(lambda step, g: pooling(patcher, t, r, step, g), [ts])[0]
    inject = per_timestep(lambda step, g: strength(patcher, t, r, step, LAYER_SETS[GATE["layers"]], g), [ts])[0]
    return {"pooling": pool, "injection": inject}


def choose_snapshot(evaluations: list[dict], gate: dict = GATE):
    """The best snapshot that passes both gates (highest injection; then pooling), or None.

    Each evaluation has "pooling" and "injection"; "passed" is set on every one of them here.
    """
    for e in evaluations:
        e["passed"] = bool(math.isfinite(e["pooling"]) and math.isfinite(e["injection"])
                           and e["pooling"] >= gate["pooling_at_least"] and e["injection"] >= gate["injection_at_least"])
    passing = [e for e in evaluations if e["passed"]]
    return max(passing, key=lambda e: (e["injection"], e["pooling"], e.get("steps", 0))) if passing else None


def render_check(device, out_dir: Path) -> dict:
    """Creatures rendered on the training device equal those rendered on the CPU; a picture of both (device left)."""
    from quality.creatures import draw_creatures, to_pil_grid

    cpu = draw_creatures(16, torch.Generator().manual_seed(11))
    on_device = draw_creatures(16, torch.Generator().manual_seed(11), device=device)
    picture = out_dir / "device-check-creatures.png"
    to_pil_grid(torch.cat([on_device.images.cpu(), cpu.images], -1), columns=4).save(picture)
    difference = (on_device.images.cpu() - cpu.images).abs()
    return {"max_difference_vs_cpu": float(difference.max()),
            "pixels_differing_vs_cpu": float((difference.amax(1) > 1e-4).float().mean()),  # float rounding at edges
            "picture": str(picture.relative_to(REPO) if picture.is_relative_to(REPO) else picture)}


def section_training(device, smoke, seconds, out_dir: Path, work: Path, batch: int, width: int, extra: list[str]) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob(f"{ASSET_NAME}*"):
        old.unlink()
    out = work / f"{ASSET_NAME}.safetensors"
    log_path = work / "train.log"
    minutes = max(seconds, 5.0) / 60
    info = {"recipe": "--twins, seed 0", "budget_s": seconds, "render": render_check(device, out_dir), "gate": dict(GATE)}
    while True:
        cmd = [sys.executable, str(REPO / "quality" / "train_creatures.py"), "--twins", "--seed", "0",
               "--device", "cpu" if device.type == "cpu" else "gpu", "--batch", str(batch), "--width", str(width),
               "--steps", "1000000", "--fit-steps-to-budget", "--max-minutes", f"{minutes:.4f}",
               "--snapshot-every-minutes", f"{minutes / 4:.4f}", "--out", str(out),
               "--log-every", "20" if smoke else "500", "--threads", "2" if smoke else "8"]
        if smoke:
            cmd += ["--calibrate-steps", "6", "--warmup", "4"]
        cmd += extra
        info.update(command=" ".join(cmd[1:]), batch=batch, width=width)
        print("training:", " ".join(cmd[1:]), flush=True)
        with open(log_path, "w") as log:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=seconds + 300)
        text = log_path.read_text(errors="replace")
        out_of_memory = "OutOfMemoryError" in text or "out of memory" in text
        if done.returncode != 0 and out_of_memory and batch > 8:
            print(f"training ran out of memory at batch {batch}; again at {batch // 2}", flush=True)
            batch //= 2
            continue
        break
    shutil.copy(log_path, out_dir / "device-check-train.log")
    info["returncode"] = done.returncode
    if done.returncode != 0 or not out.with_suffix(".json").is_file():
        info["error"] = "training failed: " + "\n".join(text.splitlines()[-8:])
        return info
    record = json.loads(out.with_suffix(".json").read_text())
    info.update(steps=record["steps"], steps_per_s=record.get("steps_per_s"), wall_s=record["wall_time_s"],
                final_loss=record["final_loss"], parameters=record["parameters"], device=record.get("device"))
    print(f"training: {record['steps']} steps in {record['wall_time_s']} s ({record.get('steps_per_s')} steps/s), "
          f"loss {record['final_loss']:.4f}", flush=True)

    snapshots = sorted(work.glob(f"{ASSET_NAME}.step*.safetensors"), key=lambda p: int(p.suffixes[0][5:]))
    snapshots = [p for p in snapshots if int(p.suffixes[0][5:]) != record["steps"]][-4:] + [out]  # the last 4 and the end
    evaluations = []
    for asset in snapshots:
        steps = json.loads(asset.with_suffix(".json").read_text())["steps"]
        try:
            with torch.inference_mode():
                figures = gate_snapshot(asset, pairs=2 if smoke else 12)
        except Exception as error:
            figures = {"pooling": float("nan"), "injection": float("nan"), "error": f"{type(error).__name__}: {error}"}
        evaluations.append({"asset": asset.name, "steps": steps, **figures})
        print(f"gate {asset.name}: pooling {figures['pooling']:.3f}, injection {figures['injection']:.3f}", flush=True)
    chosen = choose_snapshot(evaluations)
    finite = lambda v: v if math.isfinite(v) else -1e9  # noqa: E731
    best = chosen or max(evaluations, key=lambda e: (finite(e["injection"]), finite(e["pooling"]), e["steps"]))
    name = ASSET_NAME if chosen else f"{ASSET_NAME}_unpassed"
    for old in out_dir.glob(f"{ASSET_NAME}*.safetensors"):
        old.unlink()
    for old in out_dir.glob(f"{ASSET_NAME}*.json"):
        old.unlink()
    source = work / best["asset"]
    written = out_dir / f"{name}.safetensors"
    shutil.copy(source, written)
    shutil.copy(source.with_suffix(".json"), written.with_suffix(".json"))
    shown = written.relative_to(REPO) if written.is_relative_to(REPO) else written
    info.update(evaluations=evaluations, decision={
        "passed": chosen is not None,
        "chosen": best["asset"] if chosen else None,
        "asset": str(shown) if chosen else None,
        "best_unpassed_asset": None if chosen else str(shown),
        "text": (f"{best['asset']} passed (pooling {best['pooling']:.3f}, injection {best['injection']:.3f}): written to {shown}"
                 if chosen else f"no snapshot passed; the best ({best['asset']}) kept as {shown} for study, not as a test model"),
    })
    print("gate decision:", info["decision"]["text"], flush=True)
    return info


# ----------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    started = time.time()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the same paths on the CPU at toy sizes (about a minute)")
    parser.add_argument("--budget-s", type=float, default=None, help="wall-clock budget of the whole command (GPU 540, smoke 75)")
    parser.add_argument("--train-reserve-s", type=float, default=None,
                        help="seconds kept after training for gating and writing (GPU 60, smoke 10)")
    parser.add_argument("--min-train-s", type=float, default=None, help="train at least this long (GPU 60, smoke 6)")
    parser.add_argument("--train-batch", type=int, default=None, help="training batch (GPU 256, smoke 4)")
    parser.add_argument("--train-width", type=int, default=64,
                        help="UNet width (model_channels); 64 keeps the fp16 asset at 15.5 MB")
    parser.add_argument("--train-arg", action="append", default=[], help="an extra argument for train_creatures.py (repeatable)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("paths", "speed", "training"),
                        help="leave sections out (the JSON then says so; all_ok stays false)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where device-check.json and its files go (default benchmarks/results; smoke: .e4e/device-check-smoke)")
    parser.add_argument("--copy-to", type=Path, default=None,
                        help="also copy every file written to this folder at the end (a lent machine's $OUT)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    budget = args.budget_s or (75.0 if smoke else 540.0)
    reserve = args.train_reserve_s if args.train_reserve_s is not None else (10.0 if smoke else 60.0)
    min_train = args.min_train_s if args.min_train_s is not None else (6.0 if smoke else 60.0)
    out_dir = (args.out_dir or (REPO / ".e4e" / "device-check-smoke" if smoke else REPO / "benchmarks" / "results")).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "train-work" if smoke else REPO / ".e4e" / "device-check-train"  # snapshots (not copied back)
    if smoke:
        torch.set_num_threads(2)
    elif not torch.cuda.is_available():
        print("device-check needs an NVIDIA GPU (CUDA); on a CPU run it with --smoke (make device-check SMOKE=1)")
        return 2

    from comfy_host import load_host_with_pack

    host_nodes, pack = load_host_with_pack("device-check-base", cpu=smoke)
    import comfy.model_management

    device = comfy.model_management.get_torch_device()
    name = comfy.model_management.get_torch_device_name(device)
    print(f"device-check on {name}, torch {torch.__version__}, {'smoke (toy sizes)' if smoke else 'full size'}", flush=True)
    report = {"smoke": smoke, "device": name, "torch": torch.__version__, "budget_s": budget, "skipped": args.skip,
              "paths_expected": [f"{f} {d} {p}" for f, *_ in families(smoke) for d in DTYPES for p in PATHS],
              "sections_s": {}}
    out_json = out_dir / "device-check.json"

    def write():
        report["wall_s"] = time.time() - started
        report["peak_rss_mb"] = bench.peak_rss_mb()
        out_json.write_text(json.dumps(report, indent=2, default=str) + "\n")

    kept = {}
    if "paths" not in args.skip:
        t = time.time()
        with torch.inference_mode():  # as ComfyUI's executor runs nodes
            report["paths"], kept = section_paths(host_nodes, pack, device, smoke, keep_fp16="speed" not in args.skip)
        report["sections_s"]["paths"] = time.time() - t
        write()
    if "speed" not in args.skip:
        t = time.time()
        with torch.inference_mode():
            try:
                report["speed"] = section_speed(host_nodes, device, smoke, kept)
            except Exception as error:
                report["speed"] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc().splitlines()[-12:]}
                print("speed section failed:", report["speed"]["error"], flush=True)
        report["sections_s"]["speed"] = time.time() - t
        write()
    kept.clear()
    free_models()
    if "training" not in args.skip:
        t = time.time()
        seconds = max(min_train, budget - (time.time() - started) - reserve)
        try:
            report["training"] = section_training(device, smoke, seconds, out_dir, work,
                                                  args.train_batch or (4 if smoke else 256), args.train_width, args.train_arg)
        except Exception as error:
            report["training"] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc().splitlines()[-12:]}
            print("training section failed:", report["training"]["error"], flush=True)
        report["sections_s"]["training"] = time.time() - t

    rows = report.get("paths", [])
    seen = {f"{r['family']} {r['dtype']} {r['path']}" for r in rows if r["status"] == "ok"}
    report["all_ok"] = (not args.skip and set(report["paths_expected"]) <= seen and "error" not in report.get("speed", {})
                        and "error" not in report.get("training", {}) and "decision" in report.get("training", {}))
    report["over_budget"] = time.time() - started > budget
    write()
    failed = [f"{r['family']} {r['dtype']} {r['path']}: {r['error']}" for r in rows if r["status"] != "ok"]
    print(f"wrote {out_json} ({report['wall_s']:.0f} s, budget {budget:.0f} s); "
          f"{len(seen)}/{len(report['paths_expected'])} paths ok; peak RSS {report['peak_rss_mb']:.0f} MB", flush=True)
    for line in failed:
        print("FAILED", line, flush=True)
    if args.copy_to:
        args.copy_to.mkdir(parents=True, exist_ok=True)
        for path in [out_json, *out_dir.glob("device-check-*"), *out_dir.glob(f"{ASSET_NAME}*")]:
            shutil.copy(path, args.copy_to / path.name)
        print(f"copied the results to {args.copy_to}", flush=True)
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
