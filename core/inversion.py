"""What the Invert node hands to the rest of the graph (the E4E_INVERSION type)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .features import FeatureBank


@dataclass(frozen=True)
class Inversion:
    """An image inverted along a sigma schedule, from step `skip` on.

    All tensors live on the intermediate device. Latents are in the model's own
    space (after the latent format's process_in), `source_latent` is the LATENT
    as it was given (before process_in).
    """

    sigmas: torch.Tensor  # full schedule [steps + 1], ending at 0
    skip: int
    latents: torch.Tensor  # [steps - skip, B, C, H, W]
    noise_maps: torch.Tensor  # [steps - skip, B, C, H, W]
    reconstruction: torch.Tensor  # [B, C, H, W], the replay's landing point at sigma 0
    source_latent: torch.Tensor  # [B, C, H, W] as given to Invert
    clean_latent: torch.Tensor  # source_latent in model space (what the sampler starts from at sigma 0)
    features: FeatureBank
    starts_at_max_sigma: bool  # ComfyUI scales the first noise differently there
    model_family: str  # e.g. "SD15"; used to refuse mixing inversions of different models
    image_downscale: int = 8  # image pixels per latent cell
    # Provenance (see nodes/model_info.model_fingerprint): which model made it, from which latent, how.
    made_by: str = ""  # model fingerprint; "" when unknown (then only the family is compared)
    source_digest: str = ""  # core.provenance.tensor_digest(source_latent)
    seed: Optional[int] = None
    cfg: Optional[float] = None

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) in image pixels of the image that was inverted."""
        h, w = self.latents.shape[-2:]
        return int(h) * self.image_downscale, int(w) * self.image_downscale

    @property
    def batch(self) -> int:
        return int(self.latents.shape[1])

    def describe(self) -> str:
        """What a user can recognise an inversion by, for error messages."""
        h, w = self.image_size
        text = f"a {w}x{h} image"
        if self.source_digest:
            text += f" (latent #{self.source_digest[:8]})"
        if self.seed is not None:
            text += f", seed {self.seed}"
        if self.cfg is not None:
            text += f", cfg {self.cfg:g}"
        return text + f", {self.steps} steps, skip {self.skip}"

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    @property
    def generation_sigmas(self) -> torch.Tensor:
        """The sigmas a replay walks: from the skip to 0."""
        return self.sigmas[self.skip :]

    @property
    def generation_steps(self) -> int:
        return self.steps - self.skip

    def trajectory(self, k: int) -> torch.Tensor:
        """The latent after k generation steps (k = 0 is the start, k = generation_steps the end)."""
        if k == self.generation_steps:
            return self.reconstruction
        return self.latents[k]

    def step_of_sigma(self, sigma: float, rel_tol: float = 1e-4) -> int | None:
        """Absolute schedule step whose sigma is `sigma`, or None."""
        diffs = (self.sigmas[:-1].double() - float(sigma)).abs()
        index = int(torch.argmin(diffs))
        if diffs[index] <= rel_tol * max(float(sigma), 1e-6):
            return index
        return None


def check_compatible(reference: Inversion, target: Inversion) -> None:
    """Refuse a reference/target pair that cannot run in lockstep."""
    if reference.model_family != target.model_family:
        raise ValueError(
            f"reference_inversion was made with a {reference.model_family} model and target_inversion "
            f"with a {target.model_family} model: invert both with the same MODEL"
        )
    same_sigmas = reference.sigmas.shape == target.sigmas.shape and torch.allclose(reference.sigmas, target.sigmas, rtol=1e-5, atol=0)
    if reference.skip != target.skip or not same_sigmas:
        raise ValueError(
            "reference_inversion and target_inversion use different schedules "
            f"(steps {reference.steps}/{target.steps}, skip {reference.skip}/{target.skip}): "
            "give both Invert nodes the same steps, skip and scheduler"
        )
    if reference.made_by and target.made_by and reference.made_by != target.made_by:
        raise ValueError(
            f"reference_inversion was made with the model [{reference.made_by}] and target_inversion with "
            f"[{target.made_by}]: invert both with the same MODEL (the same output of the same loader/LoRA/FreeU nodes)"
        )
    recorded = set(reference.features.layers), set(target.features.layers)
    if all(recorded) and recorded[0] != recorded[1]:  # an inversion without features (record_features off) is checked where features are read
        raise ValueError("reference_inversion and target_inversion recorded different layers: invert both with the same MODEL")
    ref_batch, target_batch = reference.latents.shape[1], target.latents.shape[1]
    if ref_batch not in (1, target_batch):
        raise ValueError(
            f"reference_inversion has a batch of {ref_batch} and target_inversion {target_batch}: "
            "use one reference image or as many as targets"
        )


def same_inversion(a: Inversion, b: Inversion) -> bool:
    """Whether two inversions would replay the same trajectory (the same object, or equal noise maps and start)."""
    if a is b:
        return True
    return (
        a.latents.shape == b.latents.shape
        and a.skip == b.skip
        and torch.equal(a.sigmas, b.sigmas)
        and torch.equal(a.noise_maps, b.noise_maps)
        and torch.equal(a.latents[0], b.latents[0])
    )
