"""Does the model read a part's colour from a distant copy of that part? (about a minute)

For held-out creatures drawn twice side by side (the `--twins` training images), recolour the left copy's parts
(each takes another creature's colour for another part), noise both images with the same draw at one timestep, and
report how far the right copy's clean estimate moved towards the left copy's new part colours: 0 = the right copy
is denoised from its own pixels only, 0.5 = the two copies are pooled equally, as an ideal denoiser of twins would
at high noise. A model that pools colour across tokens through self-attention shows it here first; rearranging
self-attention inputs (the method) can only move colour on such a model.

    python quality/twin_pooling.py --asset .e4e/probe/twins.safetensors [--pairs 12] [--timesteps 661 561 461 261]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from quality import creature_model as cm  # noqa: E402
from quality.injection_strength import (  # noqa: E402
    clean_estimate, diagnostic_setup, fraction_moved, part_colours, per_timestep, sigma_at,
)


def recoloured(t, r) -> tuple[torch.Tensor, torch.Tensor]:
    """t's images with part k painted in r's part k+1 colour, and those colours [B, 4, 3]."""
    images, colours = t.images.clone(), r.part_colours.roll(-1, dims=1)
    for k in range(colours.shape[1]):
        images = torch.where(t.part_masks[:, k][:, None], colours[:, k, :, None, None], images)
    return images, colours


def pooling(patcher, t, r, timestep: int, generator) -> float:
    sigma = sigma_at(patcher, timestep)
    left, new_colours = recoloured(t, r)
    twins = torch.cat([t.images, t.images], -1)
    changed = torch.cat([left, t.images], -1)
    noise = torch.randn(cm.encode(twins).shape, generator=generator)

    def right_copy_colours(images):
        estimate = clean_estimate(patcher, cm.encode(images) + sigma * noise, sigma)  # [B, C, h, 2w] latent
        return part_colours(estimate[..., estimate.shape[-1] // 2:], t.part_masks)

    return fraction_moved(right_copy_colours(twins), right_copy_colours(changed), new_colours)


def main(argv=None) -> None:
    args, patcher, t, r = diagnostic_setup(__doc__.splitlines()[0], argv)
    cells = per_timestep(lambda ts, g: pooling(patcher, t, r, ts, g), args.timesteps)
    print(f"median fraction the right copy moved towards the left copy's new part colours, {args.pairs} creatures")
    print(" ".join(f"{f't={ts}':>7s}" for ts in args.timesteps))
    print(" ".join(f"{c:7.2f}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
