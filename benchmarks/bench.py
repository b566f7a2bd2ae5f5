"""`make bench`: the transfer's costs against baselines measured in the same run; writes bench-results.json.

    python benchmarks/bench.py [--quick] [--threads N] [--gpu] [--out bench-results.json]

Rows (every ratio has its baseline timed in this run, on these tensors or this model):

- matching_vs_gemm_limit: `nearest_reference_index` over a bare similarity product + argmax
  (64x64 x 320 and 32x32 x 640 tokens; the larger ratio);
- matching_speedup_vs_published_loop: the published per-token loop over ours, same inputs,
  indices checked identical (the smaller speedup of the two cases);
- matching_peak_extra_mb_128: extra peak memory of matching a 128x128 grid (640 channels);
- sampling_overhead_recorded: E4E generation (Apply + E4E KSampler) over plain sampling
  (ComfyUI's ddpm sampler, same sigmas, cfg and latent) on a ComfyUI UNet with SD1.5's widths
  and attention layout, random weights;
- sampling_overhead_live: the same with feature_source "live branches" (reference and target denoised
  in the result's batch, nothing stored);
- inversion_vs_cfg_sampling: Invert over plain CFG sampling of the same steps;
- bank_mb_per_image_*: feature bytes the transfer keeps per image (the reference's working set,
  fp16) at the published schedule, computed from the UNet's layer shapes.

On the CPU the UNet runs at a small latent (--latent) so that everything fits in ~10 minutes;
--gpu runs full size (SD1.5 512 px and SDXL 1024 px), fp16, and reports seconds per step and
peak GPU memory too (prepared for a machine with an NVIDIA GPU).

Everything runs under torch.inference_mode(), as ComfyUI's executor runs nodes: with autograd on,
every inversion's noise maps carry the graph of all its UNet calls (about 3.4 GB each for the CPU
run's SD1.5 UNet), and the two inversions the sampling rows keep pushed the CPU run past 20 GB.
The peak resident memory of the process is printed and written (peak_rss_mb).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests" / "support"))  # seeded_init

from core.matching import nearest_reference_index  # noqa: E402
from core.schedule import Phase, TransferSchedule  # noqa: E402

PUBLISHED = dict(steps=100, skip=32, schedule=TransferSchedule())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(fns, device, repeat):
    """Best time of each function, interleaved so that contention hits all of them alike."""
    for fn in fns:
        fn()
    sync(device)
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            sync(device)
            best[k] = min(best[k], time.perf_counter() - start)
    return best


# ----------------------------------------------------------------------------------------------- matching

def published_loop(query, reference):
    """The published matching: one similarity map per target token, argmax on the CPU."""
    q = torch.nn.functional.normalize(query[0].float(), dim=-1)
    r = torch.nn.functional.normalize(reference[0].float(), dim=-1)
    out = torch.empty(q.shape[0], dtype=torch.long)
    for t in range(q.shape[0]):
        out[t] = int((r @ q[t]).cpu().argmax())
    return out


def bench_matching(device, dtype, repeat, loop_cases):
    rows = []
    for name, side, channels in [("64x64 x 320", 64, 320), ("32x32 x 640", 32, 640)]:
        g = torch.Generator().manual_seed(side)
        query = torch.randn(1, side * side, channels, generator=g).to(device, dtype)
        reference = torch.randn(1, side * side, channels, generator=g).to(device, dtype)
        # The limit: one bare product and the row maxima; torch's argmax and max differ in speed, take the faster.
        bare_argmax = lambda: torch.bmm(query, reference.transpose(1, 2)).argmax(dim=-1)  # noqa: E731
        bare_max = lambda: torch.bmm(query, reference.transpose(1, 2)).max(dim=-1).indices  # noqa: E731
        ours = lambda: nearest_reference_index(query, reference)  # noqa: E731
        t_ours, t_argmax, t_max = best_of([ours, bare_argmax, bare_max], device, repeat)
        t_bare = min(t_argmax, t_max)
        row = {"case": name, "ours_ms": t_ours * 1e3, "gemm_argmax_ms": t_argmax * 1e3, "gemm_max_ms": t_max * 1e3,
               "over_gemm": t_ours / t_bare}
        if name in loop_cases:
            index = ours()[0][0].cpu()
            start = time.perf_counter()
            expected = published_loop(query, reference)
            t_loop = time.perf_counter() - start
            row.update(published_loop_ms=t_loop * 1e3, speedup_vs_loop=t_loop / t_ours, identical_indices=bool(torch.equal(index, expected)))
        rows.append(row)
    return rows


PEAK_PROBE = """
import resource, sys, torch
sys.path.insert(0, {repo!r})
from core.matching import nearest_reference_index
torch.set_num_threads({threads})
device = torch.device({device!r})
g = torch.Generator().manual_seed(0)
q = torch.randn(1, 128 * 128, 640, generator=g).to(device, {dtype})
r = torch.randn(1, 128 * 128, 640, generator=g).to(device, {dtype})
if device.type == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); before = torch.cuda.memory_allocated()
    nearest_reference_index(q, r); torch.cuda.synchronize(); extra = torch.cuda.max_memory_allocated() - before
else:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    nearest_reference_index(q, r)
    extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(extra / 2**20)
"""


def matching_peak_extra_mb(device, dtype, threads):
    """In a fresh process: peak memory (RSS on the CPU, allocated on a GPU) of one 128x128 matching above its inputs."""
    code = PEAK_PROBE.format(repo=str(REPO), threads=threads, device=str(device), dtype=f"torch.{str(dtype).split('.')[-1]}")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------- models

def sd15_config():
    return {"use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4, "use_spatial_transformer": True,
            "legacy": False, "use_temporal_attention": False, "use_temporal_resblock": False,
            "model_channels": 320, "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4],
            "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
            "transformer_depth_middle": 1, "context_dim": 768, "num_heads": 8, "num_head_channels": -1,
            "use_linear_in_transformer": False, "adm_in_channels": None}


def sdxl_config():
    return {**sd15_config(), "num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4],
            "transformer_depth": [0, 0, 2, 2, 10, 10], "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
            "transformer_depth_middle": 10, "context_dim": 2048, "num_heads": -1, "num_head_channels": 64,
            "use_linear_in_transformer": True, "adm_in_channels": 2816, "num_classes": "sequential"}


def finest_layer_shapes(config, latent_side):
    """(tokens, channels) of every decoder self-attention layer at the two finest grids, read from a
    UNet built on the meta device (no memory, no weights)."""
    import comfy.ops
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel, Upsample

    unet = UNetModel(**config, dtype=torch.float16, device="meta", operations=comfy.ops.disable_weight_init)
    layers, remaining = [], sum(isinstance(m, Upsample) for b in unet.output_blocks for m in b)
    for block in unet.output_blocks:
        for module in block:
            if isinstance(module, SpatialTransformer):
                for tb in module.transformer_blocks:
                    layers.append((remaining, tb.attn1.to_q.in_features))
        remaining -= sum(isinstance(m, Upsample) for m in block)
    finest = sorted({d for d, _ in layers})[:2]
    return [((latent_side // 2**d) ** 2, c) for d, c in layers if d in finest]


def bank_sizes(config, latent_side, bytes_per_value=2):
    shapes = finest_layer_shapes(config, latent_side)
    per_step = sum(t * c for t, c in shapes) * bytes_per_value
    total = PUBLISHED["steps"] - PUBLISHED["skip"]
    schedule = PUBLISHED["schedule"]
    rearrange, refresh = len(schedule.steps_in(Phase.REARRANGE, total)), len(schedule.steps_in(Phase.REFRESH, total))
    mb = lambda steps: steps * per_step / 2**20  # noqa: E731
    return {"layers": len(shapes), "per_step_mb": mb(1), "recorded_by_invert_mb": mb(total),
            "before_per_image_mb": mb(total), "reference_mb": mb(rearrange), "target_mb": mb(refresh),
            "pair_before_mb": mb(2 * total), "pair_after_mb": mb(rearrange + refresh)}


def build_model(host_nodes, config, dtype, device, seed=0, weights=None):
    """A ComfyUI ModelPatcher around a real BaseModel with this UNet config, seeded random weights
    (or `weights`, the diffusion_model state dict of a model built here, cast to `dtype`: a second
    dtype of the same model without drawing the weights again)."""
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models
    from seeded_init import seeded_init_

    sdxl = config.get("adm_in_channels")
    family = comfy.supported_models.SDXL if sdxl else comfy.supported_models.SD15

    class RandomWeights(family):
        unet_extra_config = {}

    model_config = RandomWeights({**config, "dtype": dtype})
    model_config.set_inference_dtype(dtype, None)
    base = (comfy.model_base.SDXL if sdxl else comfy.model_base.BaseModel)(model_config, device=torch.device("cpu"))
    if weights is not None:
        base.diffusion_model.load_state_dict(weights)
    else:
        seeded_init_(base.diffusion_model, torch.Generator().manual_seed(seed))
        with torch.no_grad():
            base.diffusion_model.out[2].weight.mul_(0.2)
    base.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(base, load_device=device, offload_device=torch.device("cpu"))


def conditioning(seed, context_dim, pooled):
    g = torch.Generator().manual_seed(seed)
    extra = {"pooled_output": torch.randn(1, 1280, generator=g)} if pooled else {}
    return [[torch.randn(1, 77, context_dim, generator=g), extra]]


def profile_generation(runs: dict, rows: int = 10) -> str:
    """Where one generation's time goes: the top operators by self time, for each labelled run."""
    from torch.profiler import ProfilerActivity, profile

    parts = []
    for label, fn in runs.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        parts.append(f"--- {label}\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
    return "\n".join(parts)


def bench_sampling(host_nodes, name, config, latent_side, steps, skip, schedule, adain_start, device, dtype, repeat,
                   profile=False, model=None):
    """Invert, E4E generation and plain sampling on the same model, sigmas, cfg and latent
    (`model`: a ModelPatcher built by build_model from this config; default: build one)."""
    import comfy.samplers

    mapping = host_nodes.NODE_CLASS_MAPPINGS
    run = lambda node_id, **kw: mapping[node_id].execute(**kw).result  # noqa: E731
    model = model if model is not None else build_model(host_nodes, config, dtype, device)
    pooled = bool(config.get("adm_in_channels"))
    positive, negative = conditioning(1, config["context_dim"], pooled), conditioning(2, config["context_dim"], pooled)
    g = torch.Generator().manual_seed(3)
    latents = [{"samples": torch.randn(1, 4, latent_side, latent_side, generator=g) * 5} for _ in range(2)]
    invert_cfg, sample_cfg = 3.5, 3.5  # the same guidance: recorded features equal the live branches'

    def invert(i):
        return run("E4E_Invert", model=model, positive=positive, negative=negative, latent=latents[i], steps=steps,
                   skip=skip, cfg=invert_cfg, seed=7, scheduler="ddim_uniform")[0]

    target, reference = invert(0), invert(1)
    def apply(source):
        return run("E4E_ApplyEyeForEye", model=model, reference_inversion=reference, target_inversion=target,
                   start=schedule.start, end=schedule.end, refresh_every=schedule.refresh_every,
                   refresh_until=schedule.refresh_until, mode="rearrange features (q, k, v)", feature_source=source)[0]

    patched, patched_live = apply("recorded at inversion"), apply("live branches")

    def plain(cfg):
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        noise = torch.randn(latents[0]["samples"].shape, generator=torch.Generator().manual_seed(0))
        return guider.sample(noise, latents[0]["samples"], comfy.samplers.sampler_object("ddpm"), target.generation_sigmas,
                             disable_pbar=True, seed=0)

    def e4e(model=patched):
        return run("E4E_KSampler", model=model, positive=positive, negative=negative, target_inversion=target,
                   reference_inversion=reference, cfg=sample_cfg, adain_start=adain_start)

    if profile:
        print(profile_generation({"plain": lambda: plain(sample_cfg), "recorded": e4e, "live": lambda: e4e(patched_live)}), flush=True)
    peak = {}
    if device.type == "cuda":
        for label, fn in (("plain", lambda: plain(sample_cfg)), ("e4e", e4e), ("e4e_live", lambda: e4e(patched_live))):
            torch.cuda.reset_peak_memory_stats()
            fn()
            peak[label] = torch.cuda.max_memory_allocated() / 2**20
    t_plain, t_e4e, t_live, t_invert = best_of([lambda: plain(sample_cfg), e4e, lambda: e4e(patched_live), lambda: invert(0)],
                                               device, repeat)
    store = next(p for p in patched.model_options["transformer_options"]["patches"]["attn1_patch"] if hasattr(p, "store")).store
    gen = steps - skip
    row = {"unet": name, "latent": latent_side, "steps": steps, "skip": skip, "generation_steps": gen,
           "schedule": schedule.__dict__, "plain_s": t_plain, "e4e_s": t_e4e, "invert_s": t_invert,
           "plain_s_per_step": t_plain / gen, "e4e_s_per_step": t_e4e / gen,
           "e4e_over_plain": t_e4e / t_plain, "e4e_live_s": t_live, "e4e_live_over_plain": t_live / t_plain,
           "invert_over_cfg_sampling": t_invert / t_plain,
           "bank_recorded_mb": (target.features.nbytes + reference.features.nbytes) / 2**20,
           "bank_kept_by_transfer_mb": store.nbytes / 2**20, "feature_dtype": str(next(iter(target.features.features.values())).dtype)}
    if peak:
        row["peak_gpu_mb"] = peak
    return row


# ----------------------------------------------------------------------------------------------- main

def table(results):
    keys = ["matching_vs_gemm_limit", "matching_speedup_vs_published_loop", "matching_peak_extra_mb_128",
            "sampling_overhead_recorded", "sampling_overhead_live", "inversion_vs_cfg_sampling",
            "bank_mb_per_image_sd15_512", "bank_mb_per_image_sdxl_1024"]
    lines = [f"{'metric':40s} value", "-" * 56]
    for key in keys:
        value = results[key]
        lines.append(f"{key:40s} {'null' if value is None else f'{value:.3f}' if isinstance(value, float) else value}")
    return "\n".join(lines)


def gpu_plan():
    """The --gpu runs: full-size SD1.5 at 512 px and SDXL at 1024 px, the published schedule."""
    return dict(runs=[("sd15", sd15_config(), 64), ("sdxl", sdxl_config(), 128)], steps=100, skip=32,
                schedule=TransferSchedule(), adain=49)


def cpu_plan(quick: bool, latent=None):
    """The CPU run: SD1.5 widths at a small latent; the published proportions on a short schedule (skip 30%,
    start at 15% of generation, refresh twice early)."""
    steps, skip = (8, 2) if quick else (20, 6)
    schedule = TransferSchedule(start=1, refresh_every=2, refresh_until=4) if quick else TransferSchedule(start=2, refresh_every=3, refresh_until=8)
    return dict(runs=[("sd15", sd15_config(), latent or (8 if quick else 16))], steps=steps, skip=skip, schedule=schedule,
                adain=(steps - skip) * 49 // 68)


def summary(name, dtype, quick, matching, peak_mb, sizes, sampling) -> dict:
    """The results dict bench-results.json holds (sampling[0] is the SD1.5 row)."""
    sd15 = sampling[0]
    return {
        "device": name, "dtype": str(dtype), "threads": torch.get_num_threads(), "torch": torch.__version__, "quick": quick,
        "matching_vs_gemm_limit": max(r["over_gemm"] for r in matching),
        "matching_speedup_vs_published_loop": min(r["speedup_vs_loop"] for r in matching if "speedup_vs_loop" in r),
        "matching_identical_indices": all(r["identical_indices"] for r in matching if "identical_indices" in r),
        "matching_peak_extra_mb_128": peak_mb,
        "sampling_overhead_recorded": sd15["e4e_over_plain"],
        "sampling_overhead_live": sd15["e4e_live_over_plain"],
        "inversion_vs_cfg_sampling": sd15["invert_over_cfg_sampling"],
        "bank_mb_per_image_sd15_512": sizes["sd15_512"]["reference_mb"],
        "bank_mb_per_image_sdxl_1024": sizes["sdxl_1024"]["reference_mb"],
        "matching": matching, "sampling": sampling, "bank": sizes,
    }


def bench_all(host_nodes, device, dtype, name, plan, quick=False, repeat=None, profile=False, models=None) -> dict:
    """Every row of the benchmark on `device` (models: optional {run name: ModelPatcher} to reuse)."""
    matching = bench_matching(device, dtype, repeat=2 if quick else 5,
                              loop_cases=("32x32 x 640",) if quick else ("64x64 x 320", "32x32 x 640"))
    for row in matching:
        print("matching", json.dumps(row), flush=True)
    peak_mb = matching_peak_extra_mb(device, dtype, torch.get_num_threads())
    print(f"matching peak extra at 128x128: {peak_mb:.0f} MB", flush=True)

    sizes = {"sd15_512": bank_sizes(sd15_config(), 64), "sdxl_1024": bank_sizes(sdxl_config(), 128)}
    for key, row in sizes.items():
        print("bank", key, json.dumps({k: round(v, 1) for k, v in row.items()}), flush=True)

    sampling = []
    for run_name, config, side in plan["runs"]:
        row = bench_sampling(host_nodes, run_name, config, side, plan["steps"], plan["skip"], plan["schedule"], plan["adain"],
                             device, dtype, repeat=repeat or (1 if quick else 2), profile=profile,
                             model=(models or {}).get(run_name))
        print("sampling", json.dumps(row), flush=True)
        sampling.append(row)
    return summary(name, dtype, quick, matching, peak_mb, sizes, sampling)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny latent, few steps, one repeat (a smoke run)")
    parser.add_argument("--gpu", action="store_true", help="full-size SD1.5 512 and SDXL 1024 on CUDA, fp16")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--latent", type=int, default=None, help="latent side for the CPU UNet runs (default 16, quick 8)")
    parser.add_argument("--profile", action="store_true", help="also print where one generation's time goes (top operators)")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from comfy_host import load_host_with_pack

    host_nodes, _ = load_host_with_pack("bench-base", cpu=not args.gpu)
    device = torch.device("cuda") if args.gpu else torch.device("cpu")
    dtype = torch.float16 if args.gpu else torch.float32
    name = torch.cuda.get_device_name() if args.gpu else "cpu"
    print(f"device {name}, {dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    plan = gpu_plan() if args.gpu else cpu_plan(args.quick, args.latent)
    with torch.inference_mode():  # as ComfyUI's executor runs nodes (see the module docstring)
        results = bench_all(host_nodes, device, dtype, name, plan, quick=args.quick, profile=args.profile)
    results["peak_rss_mb"] = peak_rss_mb()
    print(table(results))
    print(f"peak resident memory (RSS) of this process: {results['peak_rss_mb']:.0f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
