"""`make quality`: does colour land on the right part? A part-transfer benchmark on the creature model.

Pairs of different creatures (different part colours, positions, scales; same and opposite
orientation reported separately) run through the pack's real nodes, loaded by ComfyUI's own
loader, on the tiny creature diffusion model trained here (tests/assets/creatures_unet.*):

- e4e_per_step:  Apply Eye-for-an-eye (per-step matching) + KSampler (Eye-for-an-eye) with AdaIN
- e4e_live:      the same with feature_source "live branches" (reference and target denoised beside the
                 result at the sampling guidance, as the published code does)
- e4e_fixed:     the same with a fixed correspondence from Extract Features + Semantic Match
- e4e_fixed_mirror: the same, Semantic Match also trying the mirrored reference (mirror-aware)
- e4e_oracle:    a diagnostic: the fixed correspondence taken from the generator's ground truth
                 (same part, same relative position), i.e. perfect matching
- values_only:   the paper's V-injection ablation
- kv_swap:       the reference's keys and values without rearrangement (cross-image attention)
- adain_only:    no attention patch, AdaIN only
- plain_replay:  no transfer (reconstructs the target)

Metrics from the generator's ground truth: part colour accuracy (is the result's mean colour
inside each target part closest to the reference's same part among the reference's parts),
mean colour error per part (CIE Lab delta E, kornia), silhouette IoU against the target, and
background preservation (mean delta E to the target outside its silhouette).

    python quality/benchmark.py [--pairs 50] [--seed 2024] [--out quality-results.json] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from quality import creature_model as cm  # noqa: E402
from quality.creatures import PART_NAMES, Creatures, draw_creatures  # noqa: E402

METHODS = ("e4e_per_step", "e4e_live", "e4e_fixed", "e4e_fixed_mirror", "e4e_oracle", "values_only", "kv_swap", "adain_only", "plain_replay")
FOREGROUND_DELTA_E = 20.0  # a result pixel this far (Lab) from the target's background colour is creature


@dataclass(frozen=True)
class Settings:
    """The published schedule scaled to a shorter run (published: 100 steps, skip 32, rearrange from
    generation step 10, refresh every 5 until 40, AdaIN from 49, i.e. of 68 generation steps)."""

    steps: int = 50
    skip: int = 16
    start: int = 5
    refresh_every: int = 3
    refresh_until: int = 20
    adain_start: int = 25
    cfg: float = 2.5
    fixed_resolution: str = "1/8"  # the creature model's most semantic decoder grid (8x8)
    dift_timestep: int = 261
    dift_ensemble: int = 4


def run_node(nodes, node_id, **inputs):
    return nodes.NODE_CLASS_MAPPINGS[node_id].execute(**inputs).result


def as_mask(foreground: torch.Tensor) -> torch.Tensor:
    return foreground.float()  # ComfyUI MASK [B, H, W]


def transfer(nodes, model, method: str, target_inv, reference_inv, t: Creatures, r: Creatures, s: Settings):
    """One method on a batch of pairs; returns result images [B, 3, 64, 64] in 0..1."""
    cond = cm.empty_conditioning()
    masks = {"target_mask": as_mask(t.foreground), "reference_mask": as_mask(r.foreground)}
    schedule = dict(start=s.start, end=-1, refresh_every=s.refresh_every, refresh_until=s.refresh_until)
    modes = {"e4e_per_step": "rearrange features (q, k, v)", "e4e_live": "rearrange features (q, k, v)", "e4e_fixed": "rearrange features (q, k, v)",
             "e4e_fixed_mirror": "rearrange features (q, k, v)", "e4e_oracle": "rearrange features (q, k, v)", "values_only": "rearrange values only", "kv_swap": "reference keys and values, no rearrangement"}
    sampling_model = model
    if method in modes:
        extra = dict(masks) if method != "kv_swap" else {}
        if method.startswith("e4e_fixed"):
            extra["correspondence"] = fixed_correspondence(nodes, model, t, r, s, mirror=method.endswith("mirror"))
        if method == "e4e_live":
            extra["feature_source"] = "live branches"
        if method == "e4e_oracle":
            extra["correspondence"] = ground_truth_correspondence(t, r, grid=(cm.LATENT_SIZE, cm.LATENT_SIZE))
        (sampling_model,) = run_node(nodes, "E4E_ApplyEyeForEye", model=model, reference_inversion=reference_inv,
                                     target_inversion=target_inv, mode=modes[method], **schedule, **extra)
    adain = -1 if method == "plain_replay" else s.adain_start
    (latent,) = run_node(nodes, "E4E_KSampler", model=sampling_model, positive=cond, negative=cond,
                         target_inversion=target_inv, reference_inversion=reference_inv, cfg=s.cfg, adain_start=adain, **masks)
    return cm.decode_images(latent["samples"])


def fixed_correspondence(nodes, model, t: Creatures, r: Creatures, s: Settings, mirror: bool = False):
    def features(images):
        (out,) = run_node(nodes, "E4E_ExtractFeatures", model=model, positive=cm.empty_conditioning(),
                          latent={"samples": cm.encode(images)}, resolution=s.fixed_resolution, layer="all",
                          timestep=s.dift_timestep, ensemble=s.dift_ensemble, seed=0, step=0)
        return out

    extra = {"mirrored_reference_features": features(torch.flip(r.images, dims=[-1]))} if mirror else {}
    (corr,) = run_node(nodes, "E4E_SemanticMatch", target_features=features(t.images), reference_features=features(r.images),
                       mutual=False, min_similarity=-1.0, target_mask=as_mask(t.foreground), reference_mask=as_mask(r.foreground), **extra)
    return corr


def ground_truth_correspondence(t: Creatures, r: Creatures, grid):
    """Each target token of a part -> the reference token of the same part nearest to the same place
    relative to the part's centre (scaled, mirrored when the orientations differ); background: invalid."""
    from core.correspondence import Correspondence

    h, w = grid
    cell = t.images.shape[-1] / w
    centres = (torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1).flip(-1).reshape(-1, 2) + 0.5) * cell

    def token_parts(c: Creatures):
        coverage = torch.nn.functional.avg_pool2d(c.part_masks.float(), int(cell)).flatten(2)  # [B, 4, T]
        part = coverage.argmax(1)
        return torch.where(coverage.amax(1) >= 0.5, part, -1)  # [B, T]

    t_part, r_part = token_parts(t), token_parts(r)
    index = torch.zeros_like(t_part)
    for b in range(t_part.shape[0]):
        ratio = float(r.scale[b] / t.scale[b])
        mirror = -1.0 if bool(t.flipped[b] != r.flipped[b]) else 1.0
        for p in range(4):
            own = (t_part[b] == p).nonzero().flatten()
            candidates = (r_part[b] == p).nonzero().flatten()
            if len(own) == 0 or len(candidates) == 0:
                continue
            offset = (centres[own] - t.centres[b, p]) * ratio
            offset[:, 0] *= mirror
            wanted = r.centres[b, p] + offset
            nearest = torch.cdist(wanted, centres[candidates]).argmin(1)
            index[b, own] = candidates[nearest]
    valid = (t_part >= 0) & (r_part.gather(1, index) == t_part)
    return Correspondence(index, valid.float(), valid, grid, grid)


def lab(rgb: torch.Tensor) -> torch.Tensor:
    import kornia

    return kornia.color.rgb_to_lab(rgb.clamp(0, 1))


def metrics(result: torch.Tensor, t: Creatures, r: Creatures) -> dict:
    """Per-pair metrics: part colour accuracy, part delta E, silhouette IoU, background delta E."""
    result_lab = lab(result)  # [B, 3, H, W]
    reference_parts = lab(r.part_colours.permute(0, 2, 1)[..., None]).squeeze(-1).permute(0, 2, 1)  # [B, 4, 3]
    correct, errors = [], []
    for p in range(len(PART_NAMES)):
        mask = t.part_masks[:, p].float()[:, None]
        area = mask.sum((2, 3))
        mean = (result_lab * mask).sum((2, 3)) / area.clamp_min(1)  # [B, 3]
        distances = torch.linalg.norm(reference_parts - mean[:, None], dim=-1)  # [B, 4]
        visible = area[:, 0] >= 4
        correct.append(torch.where(visible, (distances.argmin(1) == p).float(), torch.nan))
        errors.append(torch.where(visible, distances[:, p], torch.nan))
    background_lab = lab(t.background[..., None, None]).expand_as(result_lab)
    silhouette = torch.linalg.norm(result_lab - background_lab, dim=1) > FOREGROUND_DELTA_E
    union = (silhouette | t.foreground).sum((1, 2)).float()
    iou = (silhouette & t.foreground).sum((1, 2)).float() / union.clamp_min(1)
    outside = (~t.foreground).float()
    background_error = (torch.linalg.norm(result_lab - lab(t.images), dim=1) * outside).sum((1, 2)) / outside.sum((1, 2))
    return {"part_correct": torch.stack(correct, 1), "part_delta_e": torch.stack(errors, 1), "silhouette_iou": iou,
            "background_delta_e": background_error}


def summarise(per_pair: dict) -> dict:
    correct, errors = per_pair["part_correct"], per_pair["part_delta_e"]
    return {
        "pairs": int(correct.shape[0]),
        "part_colour_accuracy": float(correct.nanmean()),
        "part_colour_accuracy_by_part": {name: float(correct[:, i].nanmean()) for i, name in enumerate(PART_NAMES)},
        "part_delta_e": float(errors.nanmean()),
        "silhouette_iou": float(per_pair["silhouette_iou"].mean()),
        "background_delta_e": float(per_pair["background_delta_e"].mean()),
    }


def draw_pairs(n: int, opposite: bool, seed: int) -> tuple[Creatures, Creatures]:
    generator = torch.Generator().manual_seed(seed)
    targets = draw_creatures(n, generator, flip=False)
    references = draw_creatures(n, generator, flip=opposite)
    return targets, references


def invert(nodes, model, images, s: Settings, seed: int):
    cond = cm.empty_conditioning()
    (inv,) = run_node(nodes, "E4E_Invert", model=model, positive=cond, negative=cond, latent={"samples": cm.encode(images)},
                      steps=s.steps, skip=s.skip, cfg=1.0, seed=seed, scheduler="ddim_uniform")
    return inv  # the model is unconditional: cond == uncond, so cfg 1 gives the cfg-3.5 inversion at half the cost


def save_strip(path: Path, t: Creatures, r: Creatures, results: dict, rows: int = 6) -> None:
    """Rows of target | reference | each method, upscaled 2x."""
    from PIL import Image

    columns = [t.images[:rows], r.images[:rows]] + [results[m][:rows] for m in METHODS]
    grid = torch.cat([torch.cat(list(col), dim=1) for col in columns], dim=2)  # [3, rows*64, cols*64]
    image = Image.fromarray((grid.permute(1, 2, 0).clamp(0, 1) * 255).byte().numpy())
    image = image.resize((image.width * 2, image.height * 2), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def run(nodes, model, pairs: int, settings: Settings, batch: int, out_dir: Path, seed: int = 2024) -> dict:
    """The benchmark through ComfyUI's registered nodes (`nodes`: ComfyUI's nodes module) on `model`."""
    report = {"settings": settings.__dict__, "methods": {}}
    for orientation, opposite in (("same", False), ("opposite", True)):
        collected = {m: [] for m in METHODS}
        start = time.perf_counter()
        for first in range(0, pairs, batch):
            n = min(batch, pairs - first)
            t, r = draw_pairs(n, opposite, seed + first + (100_000 if opposite else 0))
            with torch.inference_mode():
                target_inv, reference_inv = invert(nodes, model, t.images, settings, 1), invert(nodes, model, r.images, settings, 2)
                results = {m: transfer(nodes, model, m, target_inv, reference_inv, t, r, settings) for m in METHODS}
            for m in METHODS:
                collected[m].append(metrics(results[m], t, r))
            if first == 0:
                save_strip(out_dir / f"strip_{orientation}.png", t, r, results)
        for m in METHODS:
            per_pair = {k: torch.cat([c[k] for c in collected[m]]) for k in collected[m][0]}
            report["methods"].setdefault(m, {})[orientation] = summarise(per_pair)
        print(f"{orientation} orientation: {pairs} pairs in {time.perf_counter() - start:.0f} s")
    return {**report, **summary_keys(report["methods"])}


def summary_keys(methods: dict) -> dict:
    """The headline figures: the best real Eye-for-an-eye mode (the oracle is a diagnostic) and its baselines."""
    same = {m: rows["same"] for m, rows in methods.items()}
    e4e = {m: same[m]["part_colour_accuracy"] for m in ("e4e_per_step", "e4e_live", "e4e_fixed", "e4e_fixed_mirror")}
    best = max(e4e, key=e4e.get)
    return {
        "e4e_best_mode": best,
        "e4e_best_part_colour_accuracy_same": e4e[best],
        "e4e_best_silhouette_iou": same[best]["silhouette_iou"],
        "e4e_best_background_delta_e": same[best]["background_delta_e"],
        "e4e_per_step_part_colour_accuracy_same": same["e4e_per_step"]["part_colour_accuracy"],
        "e4e_oracle_part_colour_accuracy_same": same["e4e_oracle"]["part_colour_accuracy"],
        "kv_swap_part_colour_accuracy_same": same["kv_swap"]["part_colour_accuracy"],
        "adain_only_part_colour_accuracy_same": same["adain_only"]["part_colour_accuracy"],
    }


def print_table(report: dict) -> None:
    print(f"{'method':14s} {'orient.':9s} {'part acc':>9s} {'part dE':>8s} {'sil. IoU':>9s} {'bg dE':>7s}  tail/body/head/wing")
    for method, by_orientation in report["methods"].items():
        for orientation, row in by_orientation.items():
            parts = "/".join(f"{v:.2f}" for v in row["part_colour_accuracy_by_part"].values())
            print(f"{method:14s} {orientation:9s} {row['part_colour_accuracy']:9.3f} {row['part_delta_e']:8.1f} "
                  f"{row['silhouette_iou']:9.3f} {row['background_delta_e']:7.1f}  {parts}")
    print(f"best Eye-for-an-eye mode: {report['e4e_best_mode']}: part colour accuracy (same orientation) "
          f"{report['e4e_best_part_colour_accuracy_same']:.3f} vs key/value swap {report['kv_swap_part_colour_accuracy_same']:.3f}, "
          f"AdaIN only {report['adain_only_part_colour_accuracy_same']:.3f}; per-step {report['e4e_per_step_part_colour_accuracy_same']:.3f}, "
          f"oracle {report['e4e_oracle_part_colour_accuracy_same']:.3f}; silhouette IoU {report['e4e_best_silhouette_iou']:.3f}, "
          f"background dE {report['e4e_best_background_delta_e']:.1f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=50, help="pairs per orientation (100 pairs in all)")
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--out", type=Path, default=REPO / "quality-results.json")
    parser.add_argument("--images", type=Path, default=REPO / "output" / "quality")
    parser.add_argument("--asset", type=Path, default=cm.ASSET)
    parser.add_argument("--seed", type=int, default=2024, help="which pairs are drawn")
    parser.add_argument("--smoke", action="store_true", help="a few pairs and steps (the test suite's check)")
    args = parser.parse_args(argv)
    settings = Settings(steps=12, skip=4, start=1, refresh_every=3, refresh_until=4, adain_start=6) if args.smoke else Settings()
    pairs = 4 if args.smoke else args.pairs
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    from comfy_host import load_host_with_pack

    nodes, _ = load_host_with_pack("quality-base")
    report = run(nodes, cm.load_model_patcher(args.asset), pairs, settings, min(args.batch, pairs), args.images, args.seed)
    report["seed"] = args.seed
    report["wall_seconds"] = time.perf_counter() - start
    print_table(report)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} and example strips under {args.images} in {report['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
