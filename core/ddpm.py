"""Edit-friendly DDPM inversion and its exact replay, in ComfyUI's sigma space.

Latents follow x = x0 + sigma * eps. One ancestral (eta = 1) step from sigma to
sigma_next with the model's clean estimate `denoised` is

    x_next = denoised + (x - denoised) * sigma_down / sigma + sigma_up * z,

with sigma_down = sigma_next^2 / sigma and
sigma_up = sigma_next * sqrt(sigma^2 - sigma_next^2) / sigma. This is exactly the
DDPM posterior step (Ho et al.) rewritten for x = x0 + sigma * eps, so the
inversion of Huberman-Spiegelglas et al. carries over unchanged: draw every noisy
latent independently, then solve each step for the z that lands on the next one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

Denoiser = Callable[[torch.Tensor, int], torch.Tensor]
"""denoise(x, step_index) -> the model's clean estimate at sigmas[step_index]."""


def ancestral_step_sizes(sigma: float, sigma_next: float) -> tuple[float, float]:
    """(sigma_down, sigma_up) of one DDPM (eta = 1) step; (0, 0) when landing on sigma 0."""
    if sigma_next <= 0.0:
        return 0.0, 0.0
    sigma_up = sigma_next * math.sqrt(max(sigma**2 - sigma_next**2, 0.0)) / sigma
    return sigma_next**2 / sigma, sigma_up


def ddpm_step_mean(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """The noise-free part of the DDPM step from sigma to sigma_next."""
    sigma_down, _ = ancestral_step_sizes(sigma, sigma_next)
    return denoised + (x - denoised) * (sigma_down / sigma)


def independent_noisy_latents(x0: torch.Tensor, sigmas: list[float], seed: int) -> list[torch.Tensor]:
    """x_i = x0 + sigma_i * eps_i with an independent eps_i per step (drawn on the CPU, seeded).

    Every step's noise is drawn, skipped or not, so a seed gives the same latents
    whatever the skip.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    latents = []
    for sigma in sigmas:
        eps = torch.randn(x0.shape, generator=generator, dtype=torch.float32)
        latents.append(x0 + float(sigma) * eps.to(x0.device, x0.dtype))
    return latents


@dataclass
class InversionResult:
    latents: torch.Tensor  # [steps - start, B, C, H, W]: x at sigmas[start], ..., sigmas[-2]
    noise_maps: torch.Tensor  # [steps - start, B, C, H, W]: z of each step (zeros on the last)
    reconstruction: torch.Tensor  # where a replay lands at sigma 0 (model's estimate from the last noisy latent)


def invert(
    denoise: Denoiser,
    x0: torch.Tensor,
    sigmas: list[float],
    start: int,
    seed: int,
    on_step: Optional[Callable[[int], None]] = None,
) -> InversionResult:
    """Edit-friendly DDPM inversion of x0 along `sigmas` (descending, ending at 0).

    Only steps from `start` on are solved (earlier ones are never replayed).
    `on_step(i)` runs before the model is evaluated at step i.
    """
    steps = len(sigmas) - 1
    if not 0 <= start < steps:
        raise ValueError(f"skip must be between 0 and steps - 1 ({steps - 1}), got {start}")
    noisy = independent_noisy_latents(x0, sigmas[:-1], seed) + [x0]
    latents, noise_maps = [], []
    reconstruction = x0
    for i in range(start, steps):
        if on_step is not None:
            on_step(i)
        denoised = denoise(noisy[i], i)
        mean = ddpm_step_mean(noisy[i], denoised, sigmas[i], sigmas[i + 1])
        _, sigma_up = ancestral_step_sizes(sigmas[i], sigmas[i + 1])
        if sigma_up > 0.0:
            z = (noisy[i + 1] - mean) / sigma_up
        else:
            z = torch.zeros_like(mean)
            reconstruction = mean
        latents.append(noisy[i])
        noise_maps.append(z)
    return InversionResult(torch.stack(latents), torch.stack(noise_maps), reconstruction)


def replay(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: list[float],
    noise_maps: torch.Tensor,
    after_step: Optional[Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]] = None,
) -> torch.Tensor:
    """Run DDPM steps along `sigmas`, injecting noise_maps[i] at step i.

    `after_step(i, x_next, denoised)` may return a modified latent (AdaIN, previews).
    With the model and conditioning of the inversion this retraces its latents.
    """
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, i)
        x = ddpm_step_mean(x, denoised, sigmas[i], sigmas[i + 1])
        _, sigma_up = ancestral_step_sizes(sigmas[i], sigmas[i + 1])
        if sigma_up > 0.0:
            x = x + sigma_up * noise_maps[i].to(x.device, x.dtype)
        if after_step is not None:
            x = after_step(i, x, denoised)
    return x
