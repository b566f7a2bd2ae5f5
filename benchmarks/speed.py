"""Speed of the pack's hot paths against baselines measured in the same run (CPU or GPU).

    python benchmarks/speed.py [--device cpu|cuda] [--unet sd15,sdxl] [--out results.json]

1. Matching: the published implementation's per-token loop (one similarity map per target
   token, moved to the CPU, argmax there) against `nearest_reference_index` (one chunked
   matrix product on the device) at SD1.5 and SDXL token grids; the indices must agree.
2. One denoising step of a full-size UNet (random weights; ComfyUI's own UNetModel) with CFG:
   plain, with the Eye-for-an-eye patch rearranging every finest decoder layer, and the
   published three-branch layout (result, reference, target in one batch, times CFG).

Needs ComfyUI's `comfy/` package on the path (COMFYUI_PATH or the pinned host) and torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.attention_patch import EyeForEyePatch, TransferObject  # noqa: E402
from core.features import FeatureBank  # noqa: E402
from core.inversion import Inversion  # noqa: E402
from core.matching import nearest_reference_index  # noqa: E402
from core.schedule import TransferSchedule  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeat=3):
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def published_nearest(query, reference):
    """The published matching: a Python loop over target tokens, one similarity map each, argmax on the CPU."""
    q, r = F.normalize(query[0], dim=-1), F.normalize(reference[0], dim=-1)
    out = torch.empty(q.shape[0], dtype=torch.long)
    for t in range(q.shape[0]):
        out[t] = int((r @ q[t]).cpu().argmax())
    return out


def bench_matching(device, dtype):
    rows = []
    for name, tokens, channels in [("SD1.5 512px, 64x64 grid", 4096, 320), ("SD1.5 512px, 32x32 grid", 1024, 640),
                                   ("SDXL 1024px, 64x64 grid", 4096, 640), ("SDXL 1024px, 32x32 grid", 1024, 1280)]:
        g = torch.Generator().manual_seed(0)
        query = torch.randn(1, tokens, channels, generator=g).to(device, dtype)
        reference = torch.randn(1, tokens, channels, generator=g).to(device, dtype)
        ours_index, _ = nearest_reference_index(query, reference)
        base_index = published_nearest(query.float(), reference.float())
        agree = float((ours_index[0].cpu() == base_index).float().mean())
        t_base = timed(lambda: published_nearest(query.float(), reference.float()), device, repeat=1)
        t_ours = timed(lambda: nearest_reference_index(query, reference), device)
        rows.append({"case": name, "published_loop_s": t_base, "ours_s": t_ours, "speedup": t_base / t_ours, "index_agreement": agree})
        print(f"matching  {name:26s} published {t_base * 1e3:9.1f} ms   ours {t_ours * 1e3:8.2f} ms   x{t_base / t_ours:8.0f}   same index {agree:.4f}")
    return rows


def unet_configs():
    base = {"use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4, "use_spatial_transformer": True,
            "legacy": False, "use_temporal_attention": False, "use_temporal_resblock": False}
    sd15 = {**base, "model_channels": 320, "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4],
            "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
            "transformer_depth_middle": 1, "context_dim": 768, "num_heads": 8, "num_head_channels": -1,
            "use_linear_in_transformer": False, "adm_in_channels": None}
    sdxl = {**base, "model_channels": 320, "num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4],
            "transformer_depth": [0, 0, 2, 2, 10, 10], "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
            "transformer_depth_middle": 10, "context_dim": 2048, "num_heads": -1, "num_head_channels": 64,
            "use_linear_in_transformer": True, "adm_in_channels": 2816, "num_classes": "sequential"}
    return {"sd15": (sd15, 64, 77), "sdxl": (sdxl, 128, 77)}


def decoder_attention_probe():
    """An attn1 patch that records (grid, channels) of every decoder self-attention layer it sees."""
    seen = {}

    def probe(n, context, value, extra):
        block = extra["block"]
        if block[0] == "output":
            shape = extra["activations_shape"]
            seen[(block[0], block[1], extra["block_index"])] = ((int(shape[2]), int(shape[3])), n.shape[-1])
        return n, context, value
    return seen, probe


def synthetic_inversion(grids_channels, steps, batch, device, dtype, latent_shape):
    features = {k: torch.randn(steps, batch, g[0] * g[1], c, device=device, dtype=dtype) for k, (g, c) in grids_channels.items()}
    bank = FeatureBank.contiguous(features, {k: g for k, (g, c) in grids_channels.items()}, first_step=0)
    sigmas = torch.linspace(10, 0, steps + 1)
    latents = torch.zeros(steps, batch, *latent_shape)
    return Inversion(sigmas, 0, latents, latents, latents[0], latents[0], latents[0], bank, False, "bench")


def bench_unet(name, device, dtype, latent=None):
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    import comfy.ops

    config, size, tokens = unet_configs()[name]
    size = latent or size
    unet = UNetModel(**config, dtype=dtype, device=device, operations=comfy.ops.disable_weight_init)
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.02)
    unet.eval()
    params = sum(p.numel() for p in unet.parameters())

    def run(batch, patches, cond_or_uncond):
        x = torch.randn(batch, 4, size, size, device=device, dtype=dtype)
        t = torch.full((batch,), 500.0, device=device)
        context = torch.randn(batch, tokens, config["context_dim"], device=device, dtype=dtype)
        y = torch.zeros(batch, config["adm_in_channels"], device=device, dtype=dtype) if config.get("adm_in_channels") else None
        options = {"patches": patches, "cond_or_uncond": cond_or_uncond, "sigmas": torch.full((batch,), 5.0, device=device)}
        with torch.inference_mode():
            return unet(x, t, context=context, y=y, transformer_options=options)

    seen, probe = decoder_attention_probe()
    run(2, {"attn1_patch": [probe]}, [0, 1])
    finest = sorted({grid for grid, _ in seen.values()}, key=lambda g: -g[0])[:2]
    layers = {key: spec for key, spec in seen.items() if spec[0] in finest}
    steps = 4
    target = synthetic_inversion(layers, steps, 1, device, dtype, (4, size, size))
    reference = synthetic_inversion(layers, steps, 1, device, dtype, (4, size, size))
    sigma = float(target.sigmas[2])
    patch = EyeForEyePatch(target, (TransferObject(reference),), TransferSchedule(start=0, refresh_every=0))

    def patched_step():
        x = torch.randn(2, 4, size, size, device=device, dtype=dtype)
        t = torch.full((2,), 500.0, device=device)
        context = torch.randn(2, tokens, config["context_dim"], device=device, dtype=dtype)
        y = torch.zeros(2, config["adm_in_channels"], device=device, dtype=dtype) if config.get("adm_in_channels") else None
        options = {"patches": {"attn1_patch": [patch]}, "cond_or_uncond": [0, 1], "sigmas": torch.full((2,), sigma, device=device)}
        with torch.inference_mode():
            return unet(x, t, context=context, y=y, transformer_options=options)

    t_plain = timed(lambda: run(2, {}, [0, 1]), device)
    t_patch = timed(patched_step, device)
    t_three = timed(lambda: run(6, {}, [0, 0, 0, 1, 1, 1]), device)
    row = {"unet": name, "params_m": params / 1e6, "latent": size, "rearranged_layers": len(layers),
           "plain_step_s": t_plain, "e4e_step_s": t_patch, "three_branch_step_s": t_three,
           "e4e_over_plain": t_patch / t_plain, "three_branch_over_e4e": t_three / t_patch}
    print(f"unet {name}: {params / 1e6:.0f}M params, latent {size}x{size}, {len(layers)} rearranged layers | plain CFG step "
          f"{t_plain * 1e3:.1f} ms, with E4E patch {t_patch * 1e3:.1f} ms (x{t_patch / t_plain:.2f}), published three-branch "
          f"batch {t_three * 1e3:.1f} ms (x{t_three / t_patch:.2f} of ours)")
    del unet
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--unet", default="sd15", help="comma list of sd15, sdxl; empty to skip")
    parser.add_argument("--latent", type=int, default=None, help="override the latent size (a quick CPU check)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    comfy_root = os.environ.get("COMFYUI_PATH")
    if comfy_root is None:
        sys.path.insert(0, str(REPO / "scripts"))
        from comfy_host import comfyui_root
        comfy_root = str(comfyui_root())
    sys.path.insert(0, comfy_root)
    if device.type == "cpu":
        sys.argv = [sys.argv[0], "--cpu"]
        import comfy.options
        comfy.options.enable_args_parsing()
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}, dtype {dtype}, torch {torch.__version__}")
    results = {"device": name, "matching": bench_matching(device, dtype), "unet": []}
    for unet in filter(None, args.unet.split(",")):
        results["unet"].append(bench_unet(unet, device, dtype, args.latent))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
