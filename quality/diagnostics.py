"""Why colour does or does not move part by part on the creature model: the diagnostics behind docs/quality.md.

    python quality/diagnostics.py injection [--pairs 12] [--timesteps 661 561 461 261] [--asset A]  # about a minute
    python quality/diagnostics.py pooling --asset A [--pairs 12] [--timesteps 661 561 461 261]       # about a minute
    python quality/diagnostics.py features [--asset A] [--pairs 300] [--seed 12345] [--t 250] [--draws 4] [--mirror]
    python quality/diagnostics.py features --per-step    # the rearranged layers at the benchmark's generation steps
    python quality/diagnostics.py layouts --stop-after 1000 --pairs 16      # `make probe`; about 15 minutes a layout
    python quality/diagnostics.py layouts --layouts sd-like --reuse .e4e/probe/sd-like.step1000.safetensors

injection  How far one rearrangement moves the model's clean estimate towards the reference. Held-out
           same-orientation pairs are noised to one timestep (one draw each, as edit-friendly inversion does);
           the reference's self-attention inputs are recorded and moved into the target's layout by the
           ground-truth correspondence (perfect matching) at each set of LAYER_SETS. Per part, how far the clean
           estimate's mean colour moved from its unpatched value towards the reference part's colour (projection
           on the target->reference difference; 0 = not at all, 1 = all the way). The transfer's final colour
           change is roughly a weighted average of this over the rearranged steps, times the guidance scale.
           Two more tables: how token-specific the decoder's self-attention output is (`token_specificity`), and
           how much of the part colours the unpatched clean estimate already knows (`colour_known`): the
           rearrangement can only steer colour at timesteps where the model decides it.
pooling    Does the model read a part's colour from a distant copy of that part? Held-out creatures drawn twice
           side by side (the `--twins` training images); the left copy's parts are recoloured, both images noised
           with the same draw; how far the right copy's clean estimate moves towards the left copy's new colours:
           0 = denoised from its own pixels only, 0.5 = the copies pooled equally, as an ideal denoiser of twins
           does at high noise. Rearranging self-attention inputs (the method) can only move colour on such a model.
features   How much part semantics the features carry: PCK@0.1 per attention layer (`pck`). Held-out pairs of
           different creatures (seed differs from training; half share the orientation, half are mirrored), each
           image noised to t = 250 (ComfyUI's x = x0 + sigma eps), every transformer block's self-attention input
           recorded by an attn1 patch and averaged over 4 noise draws. Also prints ComfyUI's alphas_cumprod
           against the training schedule (a check on creature_model.SAMPLING_SETTINGS), the same-position baseline
           and, with --mirror, the bottleneck and decoder blocks 0, 1, 4 (those with attention) matched against the
           reference and its mirror image, keeping the orientation whose matches are more similar on average (no
           labels used).
           --per-step: the decoder layers the transfer rearranges, with the features per-step matching sees (one
           draw) at the benchmark's generation steps 0, 5, 10, 20, 30 (50 ddim_uniform steps, skip 16).
layouts    Which UNet layout lets the rearrangement move colour? Each layout of creature_model.LAYOUTS is trained
           briefly with the shipped recipe (train_creatures.py, same seed: the first --stop-after steps of a
           --steps run, so the shipped layout's probe is the shipped run's snapshot at that step), then the
           benchmark's ground-truth oracle runs against AdaIN only and plain replay on same-orientation pairs. The
           layout whose oracle beats AdaIN only by the most is the one where rearranging the decoder's
           self-attention carries colour. Writes .e4e/probe/probe-results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: `quality` importable
sys.path.insert(0, str(REPO / "scripts"))  # comfy_host

from quality import benchmark as B  # noqa: E402
from quality import creature_model as cm  # noqa: E402
from quality.creatures import draw_creatures  # noqa: E402

# The self-attention layers `injection` rearranges: extra_options["block"] -> chosen.
LAYER_SETS = {
    "decoder (the method)": lambda block: block[0] == "output",
    "decoder + middle": lambda block: block[0] in ("output", "middle"),
    "every self-attention": lambda block: True,
}
# Generation steps of the benchmark's schedule (50 ddim_uniform steps, skip 16) and their timesteps.
GENERATION_STEP_TIMESTEPS = {0: 661, 5: 561, 10: 461, 20: 261, 30: 61}
PROBE_METHODS = ("e4e_oracle", "adain_only", "plain_replay")


# ------------------------------------------------------------------------------------ shared set-up and model calls

def load_model(asset: Path):
    """ComfyUI booted in this process (CPU, base .e4e/eval-base) and the creature model at `asset` as a ModelPatcher."""
    from comfy_host import base_directory, boot_in_process

    boot_in_process(base_directory("eval-base"))
    return cm.load_model_patcher(asset)


def diagnostic_setup(asset: Path, pairs: int):
    """(model patcher, held-out targets, references): the same-orientation pairs `injection` and `pooling` draw."""
    patcher = load_model(asset)
    t, r = B.draw_pairs(pairs, False, 4242)
    return patcher, t, r


def sigma_at(patcher, timestep: int) -> torch.Tensor:
    return patcher.model.model_sampling.sigma(torch.tensor(float(timestep)))


def noised(images: torch.Tensor, sigma: torch.Tensor, generator) -> torch.Tensor:
    """ComfyUI's model input x = x0 + sigma eps for the images' latents (apply_model divides by sqrt(1 + sigma^2))."""
    x = cm.encode(images)
    return x + sigma * torch.randn(x.shape, generator=generator)


def clean_estimate(patcher, x, sigma, patch=None):
    """The model's denoised latent for x (apply_model returns it in ComfyUI's convention), optionally attn1-patched."""
    model = patcher.clone()
    if patch is not None:
        model.set_model_attn1_patch(patch)
    b = x.shape[0]
    with torch.no_grad():
        return model.model.apply_model(x, sigma.expand(b), c_crossattn=cm.empty_context(b),
                                       transformer_options=dict(model.model_options["transformer_options"]))


def part_colours(latent, masks):
    images = cm.decode(latent)  # [B, 3, H, W]
    m = masks.float()  # [B, 4, H, W]
    return torch.einsum("bchw,bphw->bpc", images, m) / m.sum((2, 3)).clamp_min(1)[..., None]


def fraction_moved(before: torch.Tensor, after: torch.Tensor, goal: torch.Tensor) -> float:
    """Median over parts of how far colours moved from `before` towards `goal` (projection; 1 = all the way)."""
    wanted = goal - before
    return float((((after - before) * wanted).sum(-1) / wanted.square().sum(-1).clamp_min(1e-6)).median())


def per_timestep(measure, timesteps) -> list[float]:
    """measure(timestep, generator) at each timestep, each with its own seeded noise."""
    return [measure(ts, torch.Generator().manual_seed(ts)) for ts in timesteps]


def timestep_cells(values) -> str:
    return " ".join(f"{v:7.2f}" for v in values)


def timestep_heads(timesteps) -> str:
    return " ".join(f"{f't={ts}':>7s}" for ts in timesteps)


# ----------------------------------------------------------------------------------------------------------- injection

def strength(patcher, t, r, timestep: int, chosen, generator) -> float:
    """How far one ground-truth rearrangement of the `chosen` layers moves part colours towards the reference's."""
    sigma = sigma_at(patcher, timestep)
    xt, xr = noised(t.images, sigma, generator), noised(r.images, sigma, generator)
    recorded = {}

    def record(n, context, value, extra):
        if chosen(extra["block"]):
            recorded[(extra["block"], extra["block_index"])] = n.clone()
        return n, context, value

    clean_estimate(patcher, xr, sigma, record)
    index_by_grid = {}

    def rearrange(n, context, value, extra):
        key = (extra["block"], extra["block_index"])
        if key not in recorded:
            return n, context, value
        h, w = int(extra["activations_shape"][2]), int(extra["activations_shape"][3])
        if (h, w) not in index_by_grid:
            corr = B.ground_truth_correspondence(t, r, (h, w))
            index_by_grid[(h, w)] = (corr.index, corr.valid)
        index, valid = index_by_grid[(h, w)]
        moved = torch.gather(recorded[key], 1, index[..., None].expand(-1, -1, n.shape[-1]))
        new = torch.where(valid[..., None], moved, n)
        return new, new, new

    plain = part_colours(clean_estimate(patcher, xt, sigma), t.part_masks)
    patched = part_colours(clean_estimate(patcher, xt, sigma, rearrange), t.part_masks)
    return fraction_moved(plain, patched, r.part_colours)


def token_specificity(patcher, t, timestep: int, generator) -> float:
    """How much the decoder's self-attention output depends on which token asks, at one timestep.

    Shuffling the decoder self-attention inputs across tokens (each position gets another token's query, keys and
    values: its output becomes another token's output) moves the clean estimate this fraction of what zeroing
    those inputs moves it (RMS). Near 0: attention acts as a pool that is the same for every token, so
    rearranging its inputs cannot place anything part by part; near 1 or above: each token's output is its own.
    """
    sigma = sigma_at(patcher, timestep)
    xt = noised(t.images, sigma, generator)
    order = {}

    def decoder_only(change):
        def patch(n, context, value, extra):
            if extra["block"][0] != "output":
                return n, context, value
            new = change(n)
            return new, new, new
        return patch

    def shuffle(n):
        if n.shape[1] not in order:
            order[n.shape[1]] = torch.randperm(n.shape[1], generator=generator)
        return n[:, order[n.shape[1]]]

    plain = clean_estimate(patcher, xt, sigma)
    shuffled = clean_estimate(patcher, xt, sigma, decoder_only(shuffle))
    zeroed = clean_estimate(patcher, xt, sigma, decoder_only(torch.zeros_like))
    return float((shuffled - plain).norm() / (zeroed - plain).norm().clamp_min(1e-12))


def colour_known(patcher, t, timestep: int, generator) -> float:
    """R^2 of the clean estimate's part colours against the true part colours (1: known, 0: the mean colour guessed)."""
    sigma = sigma_at(patcher, timestep)
    estimate = part_colours(clean_estimate(patcher, noised(t.images, sigma, generator), sigma), t.part_masks)
    truth = t.part_colours
    return float(1 - (estimate - truth).square().sum() / (truth - truth.mean((0, 1), keepdim=True)).square().sum())


def run_injection(args) -> None:
    patcher, t, r = diagnostic_setup(args.asset, args.pairs)
    print(f"median fraction of the way to the reference part colour, {args.pairs} pairs, ground-truth correspondence")
    print(f"{'layers':24s} " + timestep_heads(args.timesteps))
    for name, chosen in LAYER_SETS.items():
        cells = per_timestep(lambda ts, g: strength(patcher, t, r, ts, chosen, g), args.timesteps)
        print(f"{name:24s} " + timestep_cells(cells), flush=True)
    cells = per_timestep(lambda ts, g: token_specificity(patcher, t, ts, g), args.timesteps)
    print("decoder self-attention, token-specific share (shuffled inputs / zeroed inputs, RMS change of the estimate)")
    print(f"{'':24s} " + timestep_cells(cells), flush=True)
    cells = per_timestep(lambda ts, g: colour_known(patcher, t, ts, g), args.timesteps)
    print("part colour the unpatched clean estimate already knows (R^2 against the true part colours)")
    print(f"{'':24s} " + timestep_cells(cells), flush=True)


# ------------------------------------------------------------------------------------------------------------- pooling

def recoloured(t, r) -> tuple[torch.Tensor, torch.Tensor]:
    """t's images with part k painted in r's part k+1 colour, and those colours [B, 4, 3]."""
    images, colours = t.images.clone(), r.part_colours.roll(-1, dims=1)
    for k in range(colours.shape[1]):
        images = torch.where(t.part_masks[:, k][:, None], colours[:, k, :, None, None], images)
    return images, colours


def pooling(patcher, t, r, timestep: int, generator) -> float:
    """Fraction of the way the right copy of a twin moves towards the left copy's new part colours."""
    sigma = sigma_at(patcher, timestep)
    left, new_colours = recoloured(t, r)
    twins = torch.cat([t.images, t.images], -1)
    changed = torch.cat([left, t.images], -1)
    noise = torch.randn(cm.encode(twins).shape, generator=generator)

    def right_copy_colours(images):
        estimate = clean_estimate(patcher, cm.encode(images) + sigma * noise, sigma)  # [B, C, h, 2w] latent
        return part_colours(estimate[..., estimate.shape[-1] // 2:], t.part_masks)

    return fraction_moved(right_copy_colours(twins), right_copy_colours(changed), new_colours)


def run_pooling(args) -> None:
    patcher, t, r = diagnostic_setup(args.asset, args.pairs)
    cells = per_timestep(lambda ts, g: pooling(patcher, t, r, ts, g), args.timesteps)
    print(f"median fraction the right copy moved towards the left copy's new part colours, {args.pairs} creatures")
    print(timestep_heads(args.timesteps))
    print(timestep_cells(cells), flush=True)


# ----------------------------------------------------------------------------------------- features: PCK (pure torch)
# For each part of a target creature, take the feature token under the part's centre, find the cosine-nearest token
# of the reference creature and map that token's centre back to pixels. Correct (PCK@alpha) if within alpha *
# image_size pixels of the reference's centre of the same part. Part accuracy: the matched pixel lies inside the
# reference's mask of the same part (when masks are given), else the nearest reference part centre is the same part.
# Pixels as quality.creatures: points are (x, y), pixel j spans [j, j+1). Token (r, c) of an (h, w) grid covers
# x in [c, c+1) * image_size / w and y likewise. Features are [N, T, C], tokens row-major (T = h * w), as a ComfyUI
# attention patch sees them.

def token_index(points: torch.Tensor, grid, image_size: int = 64) -> torch.Tensor:
    """[..., 2] (x, y) pixels -> [...] row-major token index on an (h, w) grid."""
    h, w = grid
    col = (points[..., 0] * w / image_size).floor().long().clamp(0, w - 1)
    row = (points[..., 1] * h / image_size).floor().long().clamp(0, h - 1)
    return row * w + col


def token_centres(grid, image_size: int = 64) -> torch.Tensor:
    """[T, 2] (x, y) pixel centres of an (h, w) grid's tokens, row-major."""
    h, w = grid
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) * image_size / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) * image_size / w
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)


def nearest_tokens(target_features, reference_features, query_index):
    """For queries [N, K] (token indices into target) -> (best reference token [N, K], cosine [N, K])."""
    t = F.normalize(target_features.float(), dim=-1)
    r = F.normalize(reference_features.float(), dim=-1)
    q = torch.gather(t, 1, query_index[..., None].expand(-1, -1, t.shape[-1]))  # [N, K, C]
    sim = torch.einsum("nkc,ntc->nkt", q, r)
    best, idx = sim.max(-1)
    return idx, best


def score(matched: torch.Tensor, reference_centres: torch.Tensor, image_size: int = 64, alpha: float = 0.1,
          reference_masks: Optional[torch.Tensor] = None) -> dict:
    """Score matched pixels [N, K, 2] against the reference's part centres [N, K, 2] (and masks [N, K, H, W])."""
    n, k, _ = matched.shape
    dist = (matched - reference_centres).norm(dim=-1)
    correct = dist <= alpha * image_size
    if reference_masks is not None:
        size = reference_masks.shape[-1]
        px = matched[..., 0].floor().long().clamp(0, size - 1)
        py = matched[..., 1].floor().long().clamp(0, size - 1)
        parts = torch.arange(k)[None].expand(n, k)
        inside = reference_masks[torch.arange(n)[:, None].expand(n, k), parts, py, px]
    else:
        d = (matched[:, :, None, :] - reference_centres[:, None, :, :]).norm(dim=-1)  # [N, K(query), K(part)]
        inside = d.argmin(-1) == torch.arange(k)[None]
    return {
        "pck": correct.float().mean().item(),
        "part_accuracy": inside.float().mean().item(),
        "pck_per_part": correct.float().mean(0).tolist(),
        "correct": correct,
        "part_correct": inside,
        "matched": matched,
    }


def pck(target_centres: torch.Tensor, reference_centres: torch.Tensor, target_features: torch.Tensor,
        reference_features: torch.Tensor, grid, image_size: int = 64, alpha: float = 0.1,
        reference_masks: Optional[torch.Tensor] = None) -> dict:
    """PCK@alpha and part accuracy of nearest-neighbour matching of target part centres.

    target_centres, reference_centres: [N, K, 2] (x, y) pixels (K = 4 parts, same order);
    target_features, reference_features: [N, T, C] with T = h * w tokens of `grid` = (h, w);
    reference_masks: optional [N, K, H, W] bool visible part masks of the references.
    Returns dict(pck, part_accuracy, pck_per_part [K], correct [N, K], part_correct [N, K], matched [N, K, 2],
    similarity [N, K]).
    """
    query = token_index(target_centres, grid, image_size)
    idx, sim = nearest_tokens(target_features, reference_features, query)
    matched = token_centres(grid, image_size)[idx]  # [N, K, 2]
    out = score(matched, reference_centres, image_size, alpha, reference_masks)
    out["similarity"] = sim
    return out


def capture_features(patcher, images: torch.Tensor, t: int, draws: int, generator: torch.Generator, chunk: int = 50):
    """{(block kind, block id, block_index): [B, T, C]} self-attention inputs averaged over noise draws."""
    sigma = sigma_at(patcher, t)
    store: dict = {}

    def record(n, context, value, extra_options):
        block = extra_options["block"]
        store.setdefault((block[0], block[1], extra_options["block_index"]), []).append(n.detach().float().clone())
        return n, context, value

    sums: dict = {}
    for start in range(0, images.shape[0], chunk):
        x0 = cm.encode(images[start:start + chunk])
        for _ in range(draws):
            store.clear()
            clean_estimate(patcher, x0 + sigma * torch.randn(x0.shape, generator=generator), sigma, record)
            for key, (feat,) in store.items():
                sums.setdefault(key, {}).setdefault(start, torch.zeros_like(feat))
                sums[key][start] += feat / draws
    return {key: torch.cat([parts[s] for s in sorted(parts)], 0) for key, parts in sums.items()}


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


def run_features(args) -> None:
    torch.set_num_threads(args.threads)
    patcher = load_model(args.asset)
    comfy_abar = 1.0 / (1.0 + patcher.model.model_sampling.sigmas.double() ** 2)
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

    line("same position", score(targets.centres.clone(), references.centres, reference_masks=references.part_masks))
    for key in sorted(tf, key=lambda k: ({"input": 0, "middle": 1, "output": 2}[k[0]], k[1], k[2])):
        side = int(round(tf[key].shape[1] ** 0.5))
        r = pck(targets.centres, references.centres, tf[key], rf[key], (side, side),
                reference_masks=references.part_masks)
        line(f"{key[0]} {key[1]}.{key[2]} ({side}x{side})", r)
    if not args.mirror:
        return
    mf = capture_features(patcher, torch.flip(references.images, [-1]), args.t, args.draws, noise)
    for key in [("middle", 0, 0), ("output", 0, 0), ("output", 1, 0), ("output", 4, 0)]:
        if key not in tf:
            continue
        side = int(round(tf[key].shape[1] ** 0.5))
        grid = (side, side)
        query = token_index(targets.centres, grid)
        idx_a, _ = nearest_tokens(tf[key], rf[key], query)
        idx_b, _ = nearest_tokens(tf[key], mf[key], query)
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


# ------------------------------------------------------------------------------------------------------------- layouts

def probe(nodes, asset: Path, pairs: int) -> dict:
    """The benchmark's summary of PROBE_METHODS on `pairs` held-out same-orientation pairs."""
    model = cm.load_model_patcher(asset)
    t, r = B.draw_pairs(pairs, False, 4242)
    settings = B.Settings()
    rows = {}
    with torch.inference_mode():
        target, reference = B.invert(nodes, model, t.images, settings, 1), B.invert(nodes, model, r.images, settings, 2)
        for method in PROBE_METHODS:
            rows[method] = B.summarise(B.metrics(B.transfer(nodes, model, method, target, reference, t, r, settings), t, r))
    return rows


def run_layouts(args) -> None:
    from comfy_host import load_host_with_pack

    from quality import train_creatures

    nodes, _ = load_host_with_pack("quality-base")
    table = {}
    for i, layout in enumerate(args.layouts.split(",")):
        asset = args.reuse[i] if i < len(args.reuse) else args.out / f"{layout}.safetensors"
        start = time.perf_counter()
        if i >= len(args.reuse):
            train_creatures.main(["--layout", layout, "--steps", str(args.steps), "--stop-after", str(args.stop_after),
                                  "--out", str(asset), "--log-every", "250"])
        train_s = time.perf_counter() - start
        rows = probe(nodes, asset, args.pairs)
        loss = json.loads(asset.with_suffix(".json").read_text())["final_loss"]
        table[layout] = {"train_seconds": round(train_s), "final_loss": loss, **rows}
        print(f"{layout}: {asset.name}, trained in {train_s:.0f} s, loss {loss:.4f}", flush=True)
        for method, row in rows.items():
            print(f"  {method:13s} part acc {row['part_colour_accuracy']:.3f}  part dE {row['part_delta_e']:5.1f}  "
                  f"sil. IoU {row['silhouette_iou']:.3f}  bg dE {row['background_delta_e']:.1f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probe-results.json").write_text(json.dumps(table, indent=2) + "\n")
    print(f"{'layout':18s} {'loss':>7s} {'oracle acc':>10s} {'adain acc':>9s} {'oracle dE':>9s} {'adain dE':>8s} {'oracle IoU':>10s}")
    for layout, row in table.items():
        o, a = row["e4e_oracle"], row["adain_only"]
        print(f"{layout:18s} {row['final_loss']:7.4f} {o['part_colour_accuracy']:10.3f} {a['part_colour_accuracy']:9.3f} "
              f"{o['part_delta_e']:9.1f} {a['part_delta_e']:8.1f} {o['silhouette_iou']:10.3f}")


# ------------------------------------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    asset = argparse.ArgumentParser(add_help=False)
    asset.add_argument("--asset", type=Path, default=cm.ASSET, help="the creature model (default: the shipped one)")

    def command(name, run, text, parents=()):
        sub = commands.add_parser(name, parents=list(parents), help=text, description=text)
        sub.set_defaults(run=run)
        return sub

    for name, run, text in (
        ("injection", run_injection, "how far one rearrangement moves the clean estimate towards the reference "
                                     "(also the token-specific share and the part colour already known)"),
        ("pooling", run_pooling, "does the model read a part's colour from a distant copy of that part (twins)?"),
    ):
        sub = command(name, run, text, [asset])
        sub.add_argument("--pairs", type=int, default=12)
        sub.add_argument("--timesteps", type=int, nargs="+", default=[661, 561, 461, 261])

    sub = command("features", run_features, "PCK@0.1 per attention layer: how much part semantics the features carry",
                  [asset])
    sub.add_argument("--pairs", type=int, default=300)
    sub.add_argument("--seed", type=int, default=12345)
    sub.add_argument("--t", type=int, default=250)
    sub.add_argument("--draws", type=int, default=4)
    sub.add_argument("--mirror", action="store_true", help="also match against the mirrored reference")
    sub.add_argument("--per-step", action="store_true",
                     help="PCK of the rearranged layers at the benchmark's generation steps")
    sub.add_argument("--threads", type=int, default=2)

    sub = command("layouts", run_layouts, "which UNet layout lets the rearrangement move colour? (brief training of "
                                          "each, ground-truth transfer against AdaIN only)")
    sub.add_argument("--layouts", default=",".join(cm.LAYOUTS))
    sub.add_argument("--steps", type=int, default=3000, help="the schedule's length (as `make creatures`)")
    sub.add_argument("--stop-after", type=int, default=1000, help="steps actually trained")
    sub.add_argument("--reuse", type=Path, nargs="*", default=[],
                     help="already trained assets, one per layout, in order")
    sub.add_argument("--pairs", type=int, default=16)
    sub.add_argument("--out", type=Path, default=REPO / ".e4e" / "probe")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
