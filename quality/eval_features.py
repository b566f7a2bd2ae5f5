"""How much part semantics the creature model's features carry: PCK@0.1 per attention layer.

Loads tests/assets/creatures_unet.safetensors through ComfyUI (in-process, CPU) with
`creature_model.load_model_patcher`, draws held-out pairs of different creatures (seed differs
from training; half the pairs share the orientation, half are mirrored), noises each image to
t = 250 (x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, in ComfyUI's convention x = x0 + sigma eps),
runs `model.apply_model` with an attn1 patch on a ModelPatcher clone that records the
self-attention input `n` of every transformer block (extra_options["block"],
extra_options["block_index"]), averages the features over 4 noise draws and scores nearest-
neighbour part matching with quality.pck.pck.

    python quality/eval_features.py [--asset PATH] [--pairs 300] [--seed 12345] [--t 250] [--draws 4]
    python quality/eval_features.py --per-step        # the rearranged layers at the benchmark's generation steps

--per-step scores the decoder layers the transfer rearranges (the two finest decoder grids) with the
features per-step matching sees: one noise draw (edit-friendly inversion draws each step's latent
independently, x_t = x0 + sigma_t eps) at the timesteps of the benchmark's generation steps 0, 5, 10,
20 and 30 (50 ddim_uniform steps, skip 16).

Also prints ComfyUI's alphas_cumprod against the training schedule (a check on
creature_model.SAMPLING_SETTINGS), the same-position baseline and, with --mirror, the bottleneck
matched against the reference and its mirror image, keeping the orientation whose matches are
more similar on average (no labels used).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from quality import creature_model as cm  # noqa: E402
from quality.creatures import draw_creatures  # noqa: E402
from quality.pck import nearest_tokens, pck, score, token_centres, token_index  # noqa: E402


def capture_features(patcher, images: torch.Tensor, t: int, draws: int, generator: torch.Generator, chunk: int = 50):
    """{(block kind, block id, block_index): [B, T, C]} self-attention inputs averaged over noise draws."""
    model = patcher.model
    sigma = model.model_sampling.sigma(torch.tensor(float(t)))
    store: dict = {}

    def record(n, context, value, extra_options):
        block = extra_options["block"]
        key = (block[0], block[1], extra_options["block_index"])
        store.setdefault(key, []).append(n.detach().float().clone())
        return n, context, value

    patched = patcher.clone()
    patched.set_model_attn1_patch(record)
    transformer_options = patched.model_options["transformer_options"]
    sums: dict = {}
    for start in range(0, images.shape[0], chunk):
        x0 = cm.encode(images[start:start + chunk])
        b = x0.shape[0]
        for _ in range(draws):
            eps = torch.randn(x0.shape, generator=generator)
            x = x0 + sigma * eps  # ComfyUI's input; apply_model divides by sqrt(1 + sigma^2)
            store.clear()
            with torch.no_grad():
                model.apply_model(x, sigma.expand(b), c_crossattn=cm.empty_context(b),
                                  transformer_options=dict(transformer_options))
            for key, (feat,) in store.items():
                sums.setdefault(key, {}).setdefault(start, torch.zeros_like(feat))
                sums[key][start] += feat / draws
    return {key: torch.cat([parts[s] for s in sorted(parts)], 0) for key, parts in sums.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--asset", type=Path, default=cm.ASSET)
    p.add_argument("--pairs", type=int, default=300)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--t", type=int, default=250)
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--mirror", action="store_true", help="also match against the mirrored reference")
    p.add_argument("--per-step", action="store_true", help="PCK of the rearranged layers at the benchmark's generation steps")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    sys.path.insert(0, str(REPO / "scripts"))
    from comfy_host import base_directory, boot_in_process

    boot_in_process(base_directory("eval-base"))
    patcher = cm.load_model_patcher(args.asset)
    ms = patcher.model.model_sampling
    comfy_abar = 1.0 / (1.0 + ms.sigmas.double() ** 2)
    ours = cm.training_alphas_cumprod()
    print(f"schedule check: max |abar_comfy - abar_train| = {(comfy_abar - ours).abs().max().item():.2e} "
          f"(abar[250] comfy {comfy_abar[250].item():.6f} train {ours[250].item():.6f})")

    g = torch.Generator().manual_seed(args.seed)
    n = args.pairs
    same = torch.arange(n) < n // 2
    target_flip = torch.rand(n, generator=g) < 0.5
    targets = draw_creatures(n, g, flip=target_flip)
    references = draw_creatures(n, g, flip=torch.where(same, target_flip, ~target_flip))
    noise = torch.Generator().manual_seed(args.seed + 1)
    if args.per_step:
        per_step_table(patcher, targets, references, same, noise)
        return
    start = time.time()
    tf = capture_features(patcher, targets.images, args.t, args.draws, noise)
    rf = capture_features(patcher, references.images, args.t, args.draws, noise)
    print(f"features of {2 * n} images x {args.draws} draws in {time.time() - start:.1f}s")

    def line(name, r):
        c = r["correct"].float()
        print(f"{name:28s} PCK@0.1 {r['pck']:.3f}  part acc {r['part_accuracy']:.3f}  "
              f"same/opposite {c[same].mean():.3f}/{c[~same].mean():.3f}  per part "
              + " ".join(f"{v:.2f}" for v in r["pck_per_part"]))

    # Same-pixel-position baseline.
    line("same position", score(targets.centres.clone(), references.centres, reference_masks=references.part_masks))
    for key in sorted(tf, key=lambda k: ({"input": 0, "middle": 1, "output": 2}[k[0]], k[1], k[2])):
        tokens = tf[key].shape[1]
        side = int(round(tokens ** 0.5))
        r = pck(targets.centres, references.centres, tf[key], rf[key], (side, side),
                reference_masks=references.part_masks)
        line(f"{key[0]} {key[1]}.{key[2]} ({side}x{side})", r)

    if args.mirror:
        mirrored = torch.flip(references.images, [-1])
        mf = capture_features(patcher, mirrored, args.t, args.draws, noise)
        for key in [("middle", 0, 0), ("output", 0, 0), ("output", 1, 0), ("output", 4, 0)]:
            if key not in tf:
                continue
            side = int(round(tf[key].shape[1] ** 0.5))
            grid = (side, side)
            query = token_index(targets.centres, grid)
            idx_a, sim_a = nearest_tokens(tf[key], rf[key], query)
            idx_b, sim_b = nearest_tokens(tf[key], mf[key], query)
            # Orientation choice without labels: mean best cosine over all target tokens.
            all_q = torch.arange(side * side)[None].expand(n, -1)
            _, all_a = nearest_tokens(tf[key], rf[key], all_q)
            _, all_b = nearest_tokens(tf[key], mf[key], all_q)
            use_mirror = all_b.mean(1) > all_a.mean(1)
            centres = token_centres(grid)
            ma, mb = centres[idx_a], centres[idx_b].clone()
            mb[..., 0] = 64.0 - mb[..., 0]
            matched = torch.where(use_mirror[:, None, None], mb, ma)
            r = score(matched, references.centres, reference_masks=references.part_masks)
            right = (use_mirror == ~same).float().mean().item()
            line(f"{key[0]} {key[1]} +mirror", r)
            print(f"{'':28s} orientation picked right for {right:.2f} of pairs")


# Generation steps of the benchmark's schedule (50 ddim_uniform steps, skip 16) and their timesteps.
GENERATION_STEP_TIMESTEPS = {0: 661, 5: 561, 10: 461, 20: 261, 30: 61}


def per_step_table(patcher, targets, references, same, noise) -> None:
    """PCK@0.1 (same / opposite orientation) of every rearranged decoder layer at a few generation steps."""
    rows: dict = {}
    for step, t in GENERATION_STEP_TIMESTEPS.items():
        tf = capture_features(patcher, targets.images, t, 1, noise)
        rf = capture_features(patcher, references.images, t, 1, noise)
        for key in sorted(k for k in tf if k[0] == "output"):
            side = int(round(tf[key].shape[1] ** 0.5))
            c = pck(targets.centres, references.centres, tf[key], rf[key], (side, side),
                    reference_masks=references.part_masks)["correct"].float()
            rows.setdefault((key, side), []).append(f"{c[same].mean():.2f}/{c[~same].mean():.2f}")
    print("PCK@0.1 same/opposite orientation, one noise draw, per generation step (timestep):")
    print(f"{'layer':22s} " + " ".join(f"{f'step {s} (t={t})':>16s}" for s, t in GENERATION_STEP_TIMESTEPS.items()))
    for (key, side), cells in rows.items():
        print(f"{f'{key[0]}.{key[1]}.{key[2]} ({side}x{side})':22s} " + " ".join(f"{c:>16s}" for c in cells))


if __name__ == "__main__":
    main()
