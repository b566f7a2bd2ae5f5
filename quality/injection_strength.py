"""How far does one rearrangement move the model's clean estimate towards the reference? (about a minute)

For held-out same-orientation pairs, noise target and reference to one timestep (one draw each, as
edit-friendly inversion does), record the reference's self-attention inputs, then run the target with
those features moved into its layout by the ground-truth correspondence (perfect matching) at a chosen
set of self-attention layers. Reports, per part, how far the clean estimate's mean colour moved from
its unpatched value towards the reference part's colour: 0 = not at all, 1 = all the way (projection
on the target->reference colour difference). The transfer's final colour change is roughly a weighted
average of this over the rearranged steps, times the guidance scale.

It also reports how token-specific the decoder's self-attention output is (see `token_specificity`), and how much
of the target's part colours the unpatched clean estimate already knows at each timestep (`colour_known`): the
rearrangement can only steer colour at timesteps where the model decides it.

    python quality/injection_strength.py [--pairs 12] [--timesteps 661 561 461 261] [--asset ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from quality import benchmark as B  # noqa: E402
from quality import creature_model as cm  # noqa: E402

LAYER_SETS = {
    "decoder (the method)": lambda block: block[0] == "output",
    "decoder + middle": lambda block: block[0] in ("output", "middle"),
    "every self-attention": lambda block: True,
}


def clean_estimate(patcher, x, sigma, patch=None):
    model = patcher.clone()
    if patch is not None:
        model.set_model_attn1_patch(patch)
    b = x.shape[0]
    with torch.no_grad():
        eps = model.model.apply_model(x, sigma.expand(b), c_crossattn=cm.empty_context(b),
                                      transformer_options=dict(model.model_options["transformer_options"]))
    return eps  # apply_model returns the denoised latent in ComfyUI's convention


def sigma_at(patcher, timestep: int) -> torch.Tensor:
    return patcher.model.model_sampling.sigma(torch.tensor(float(timestep)))


def fraction_moved(before: torch.Tensor, after: torch.Tensor, goal: torch.Tensor) -> float:
    """Median over parts of how far colours moved from `before` towards `goal` (projection; 1 = all the way)."""
    wanted = goal - before
    return float((((after - before) * wanted).sum(-1) / wanted.square().sum(-1).clamp_min(1e-6)).median())


def part_colours(latent, masks):
    images = cm.decode(latent)  # [B, 3, H, W]
    m = masks.float()  # [B, 4, H, W]
    return torch.einsum("bchw,bphw->bpc", images, m) / m.sum((2, 3)).clamp_min(1)[..., None]


def strength(patcher, t, r, timestep: int, chosen, generator) -> float:
    sigma = sigma_at(patcher, timestep)
    xt = cm.encode(t.images) + sigma * torch.randn(cm.encode(t.images).shape, generator=generator)
    xr = cm.encode(r.images) + sigma * torch.randn(xt.shape, generator=generator)
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
    x = cm.encode(t.images)
    xt = x + sigma * torch.randn(x.shape, generator=generator)
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
    x = cm.encode(t.images)
    estimate = part_colours(clean_estimate(patcher, x + sigma * torch.randn(x.shape, generator=generator), sigma), t.part_masks)
    truth = t.part_colours
    return float(1 - (estimate - truth).square().sum() / (truth - truth.mean((0, 1), keepdim=True)).square().sum())


def diagnostic_setup(description: str, argv=None):
    """The command line shared by the creature diagnostics; returns (args, model patcher, held-out targets, references)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--asset", type=Path, default=cm.ASSET)
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[661, 561, 461, 261])
    args = parser.parse_args(argv)
    from comfy_host import base_directory, boot_in_process

    boot_in_process(base_directory("eval-base"))
    t, r = B.draw_pairs(args.pairs, False, 4242)
    return args, cm.load_model_patcher(args.asset), t, r


def per_timestep(measure, timesteps) -> list[float]:
    """measure(timestep, generator) at each timestep, each with its own seeded noise."""
    return [measure(ts, torch.Generator().manual_seed(ts)) for ts in timesteps]


def main(argv=None) -> None:
    args, patcher, t, r = diagnostic_setup(__doc__.splitlines()[0], argv)
    print(f"median fraction of the way to the reference part colour, {args.pairs} pairs, ground-truth correspondence")
    print(f"{'layers':24s} " + " ".join(f"{f't={ts}':>7s}" for ts in args.timesteps))
    for name, chosen in LAYER_SETS.items():
        cells = per_timestep(lambda ts, g: strength(patcher, t, r, ts, chosen, g), args.timesteps)
        print(f"{name:24s} " + " ".join(f"{c:7.2f}" for c in cells), flush=True)
    cells = per_timestep(lambda ts, g: token_specificity(patcher, t, ts, g), args.timesteps)
    print("decoder self-attention, token-specific share (shuffled inputs / zeroed inputs, RMS change of the estimate)")
    print(f"{'':24s} " + " ".join(f"{c:7.2f}" for c in cells), flush=True)
    cells = per_timestep(lambda ts, g: colour_known(patcher, t, ts, g), args.timesteps)
    print("part colour the unpatched clean estimate already knows (R^2 against the true part colours)")
    print(f"{'':24s} " + " ".join(f"{c:7.2f}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
