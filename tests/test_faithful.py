"""Faithful on demand: "live branches" + "published code" against a literal translation of the published
generation stage (sooyeon-go/eye_for_an_eye: models/stable_diffusion_final.py, appearance_transfer_model_final.py,
and the AdaIN of utils/adain.py), run on a tiny real ComfyUI UNet with fp32 features.

The translation is written the way the authors' code runs, in their latent scale (x_t = sqrt(abar) x0 +
sqrt(1 - abar) eps): one six-row batch [uncond result, uncond reference, uncond target, cond result,
cond reference, cond target], a per-token matching loop with a similarity map per token moved to the CPU,
a step counter that the per-step callback sets after the step, the DDIM-scheduler DDPM step with the
inversion's noise maps, and the AdaIN of the callback. `quirks=False` switches each published quirk to the
paper's rule (counter before the step, refresh of the conditional row, thresholded masks, biased AdaIN
statistics with a hard blend, last step to alpha 1), which the pack's "paper" behaviour must then match.
The published schedule (10 / 5 / 40, AdaIN 50) is scaled to 14 generation steps (4 / 2 / 9, AdaIN 10);
the start stays a multiple of the refresh period, as 10 is of 5, so `step % 2 == 0` is the published test.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from conftest import invert_pair, run_node
from tiny_models import conditioning, latent, tiny_sd15

STEPS, SKIP = 20, 6  # 14 generation steps
FEAT_START, FEAT_END, REFRESH_EVERY, REFRESH_UNTIL = 4, 100, 2, 9
ADAIN_START = 9  # the pack's start; the published adain_range.start is one more (its test is start - 1 <= step)
CFG = 2.5  # sampling; inversion uses 3.5, so live branches drift from the inverted trajectories
IMAGE = 128  # the tiny latent is 16x16


@pytest.fixture(scope="module")
def model(host):
    return tiny_sd15(seed=1)


@pytest.fixture(scope="module")
def inversions(node, model):
    return invert_pair(node, model, STEPS, SKIP, cfg=3.5)


def soft_ellipse(cx, cy, rx, ry, ramp=12.0):
    """An object mask with soft edges (values strictly between 0 and 1 over a ramp of `ramp` pixels)."""
    y, x = torch.meshgrid(torch.arange(IMAGE, dtype=torch.float32), torch.arange(IMAGE, dtype=torch.float32), indexing="ij")
    r = torch.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return ((1.0 - r) * min(rx, ry) / ramp + 0.5).clamp(0, 1)


MASKS = {"target": soft_ellipse(56, 64, 44, 36), "reference": soft_ellipse(70, 60, 40, 44)}


# ----------------------------------------------------------------------------------------------------------------
# The translation
# ----------------------------------------------------------------------------------------------------------------


class PublishedModel:
    """The AppearanceTransferModel's state the processors read: the step counter and the masks."""

    def __init__(self, layers, mask_lst, quirks, start=FEAT_START):
        self.step = 0
        self.start = start  # their feature-mixing start; the refresh test below does not depend on it
        self.layers = layers
        self.mask_lst = mask_lst  # [[appearance mask], [structure mask]] at image size, or None
        self.quirks = quirks


def area_mask(mask, size):
    """The paper rule (quirks off): a cell is inside when at least half of it is covered."""
    return F.interpolate(mask.float().view(1, 1, IMAGE, IMAGE), size=size, mode="area").view(*size) >= 0.5


def matching_feature(m: PublishedModel, x):
    """Their matching_feature for a six-row batch: rearrange row 3 (cond result) from row 4 (cond reference)."""
    feature_h = feature_w = int(math.sqrt(x.shape[1]))
    mask_lst = m.mask_lst
    if mask_lst and m.quirks:
        style_mask = F.interpolate(torch.tensor(mask_lst[0][0]).float().view(1, 1, IMAGE, IMAGE), size=(feature_h, feature_w), mode="bilinear").view(feature_h, feature_w).unsqueeze(-1).repeat(1, 1, x.shape[2])
        struct_mask = F.interpolate(torch.tensor(mask_lst[1][0]).float().view(1, 1, IMAGE, IMAGE), size=(feature_h, feature_w), mode="bilinear").view(feature_h, feature_w).unsqueeze(-1).repeat(1, 1, x.shape[2])
        style_mask = rearrange(style_mask, "h w b -> b h w")
        struct_mask = rearrange(struct_mask, "h w b -> b h w")
    x = rearrange(x, "b (h w) c -> b c h w", b=x.shape[0], h=feature_h)
    OUT_INDEX, STYLE_INDEX = 3, 4  # x.shape[0] == 6
    out_x = x[OUT_INDEX]
    style_x = x[STYLE_INDEX]
    if mask_lst and m.quirks:
        out_x = out_x * struct_mask
        style_x = style_x * style_mask
    inside_target = inside_reference = None
    if mask_lst and not m.quirks:
        inside_reference = area_mask(torch.tensor(mask_lst[0][0]), (feature_h, feature_w))
        inside_target = area_mask(torch.tensor(mask_lst[1][0]), (feature_h, feature_w))
    for x_coor, y_coor in np.ndindex(feature_h, feature_w):
        out_vec = out_x[:, y_coor, x_coor].view(1, -1)
        if torch.all(out_vec == 0) or (inside_target is not None and not inside_target[y_coor, x_coor]):
            continue
        style_vec = rearrange(style_x, "c h w -> c (h w)", h=feature_h).unsqueeze(dim=0)
        out_vec = F.normalize(out_vec)
        style_vec = F.normalize(style_vec)
        cos_map = torch.matmul(out_vec, style_vec).view(1, feature_h, feature_h).cpu().numpy()
        if inside_reference is not None:
            cos_map[0][~inside_reference.numpy()] = -np.inf
        max_yx = np.unravel_index(cos_map[0].argmax(), cos_map[0].shape)
        x[OUT_INDEX][:, y_coor, x_coor] = x[STYLE_INDEX][:, max_yx[0].item(), max_yx[1].item()]
    return rearrange(x, "b c h w -> b (h w) c")


def processor(m: PublishedModel):
    """The feature-injection part of their AttentionProcessor, as a ComfyUI attn1 patch (n == their hidden_states)."""

    def patch(n, context, value, extra_options):
        block = extra_options["block"]
        if (block[0], block[1], extra_options["block_index"]) not in m.layers:  # "up" and a 32x32 / 64x64 grid
            return n, context, value
        hidden_states = n.clone()
        if m.start <= m.step < FEAT_END:  # should_mix_features_mix
            if m.step % REFRESH_EVERY == 0 and m.step < REFRESH_UNTIL:
                if m.quirks:
                    hidden_states[0] = hidden_states[2]  # OUT_INDEX, STRUCT_INDEX of constants.py: the uncond rows
                else:
                    hidden_states[3] = hidden_states[5]
            else:
                hidden_states = matching_feature(m, hidden_states)
        return hidden_states, hidden_states, hidden_states

    return patch


def calc_mean_std(feat, eps=1e-5, mask=None, quirks=True):
    C = feat.size()[0]
    flat = feat.view(C, -1)
    if mask is not None:
        flat = flat[:, mask.view(-1) == 1]
    var = flat.var(dim=1, unbiased=quirks) + eps
    return flat.mean(dim=1).view(C, 1, 1), var.sqrt().view(C, 1, 1)


def masked_adain(content_feat, style_feat, content_mask, style_mask, quirks=True):
    size = content_feat.size()
    style_mean, style_std = calc_mean_std(style_feat, mask=style_mask, quirks=quirks)
    content_mean, content_std = calc_mean_std(content_feat, mask=content_mask, quirks=quirks)
    normalized_feat = (content_feat - content_mean.expand(size)) / content_std.expand(size)
    style_normalized_feat = normalized_feat * style_std.expand(size) + style_mean.expand(size)
    if not quirks:
        return torch.where(content_mask.bool(), style_normalized_feat, content_feat)
    return content_feat * (1 - content_mask) + style_normalized_feat * content_mask


def adain(content_feat, style_feat, quirks=True):
    size = content_feat.size()
    style_mean, style_std = calc_mean_std(style_feat, quirks=quirks)
    content_mean, content_std = calc_mean_std(content_feat, quirks=quirks)
    normalized_feat = (content_feat - content_mean.expand(size)) / content_std.expand(size)
    return normalized_feat * style_std.expand(size) + style_mean.expand(size)


def published_generation(model, target, reference, masks=None, quirks=True, start=FEAT_START):
    """Their pipeline __call__ (denoising loop, perform_ddpm_step) with their AdaIN callback; returns latents[0]."""
    unet = model.model.diffusion_model
    sampling = model.model.model_sampling
    alphas_cumprod = (1.0 / (1.0 + sampling.sigmas.double() ** 2)).float()  # the training schedule, fp32 as in diffusers
    final_alpha_cumprod = alphas_cumprod[0] if quirks else torch.tensor(1.0)  # set_alpha_to_one=False in SD1.5's config
    mask_lst = None if masks is None else [[masks["reference"].numpy()], [masks["target"].numpy()]]
    m = PublishedModel(set(target.features.layers), mask_lst, quirks, start)
    sigmas = [float(s) for s in target.generation_sigmas]
    timesteps = [int(sampling.timestep(torch.tensor(s))) for s in sigmas[:-1]]
    prompt_embeds = torch.cat([conditioning(11)[0][0]] * 3 + [conditioning(10)[0][0]] * 3)  # [uncond x3, cond x3]

    def to_their_scale(x, sigma):
        return x / math.sqrt(1.0 + sigma**2)

    latents = torch.stack([to_their_scale(inv.latents[0][0], sigmas[0]) for inv in (target, reference, target)])
    zs = [target.noise_maps[:, 0], reference.noise_maps[:, 0], target.noise_maps[:, 0]]

    def callback(st, timestep, latents):
        m.step = st
        if ADAIN_START + 1 - 1 <= m.step < 100 + 1:
            if masks is not None:
                size = latents.shape[-2:]
                if quirks:
                    struct_mask = F.interpolate(masks["target"].view(1, 1, IMAGE, IMAGE), size=size, mode="bilinear").view(*size)
                    app_mask = F.interpolate(masks["reference"].view(1, 1, IMAGE, IMAGE), size=size, mode="bilinear").view(*size)
                else:
                    struct_mask, app_mask = area_mask(masks["target"], size).float(), area_mask(masks["reference"], size).float()
                latents[0] = masked_adain(latents[0], latents[1], struct_mask, app_mask, quirks)
            else:
                latents[0] = adain(latents[0], latents[1], quirks)

    patch = processor(m)
    for i, t in enumerate(timesteps):
        if not quirks:
            m.step = i  # the paper: the step being computed
        latent_model_input = torch.cat([latents] * 2)
        noise_pred_swap = unet(
            latent_model_input.float(), torch.full((6,), float(t)), context=prompt_embeds,
            transformer_options={"patches": {"attn1_patch": [patch]}},
        )
        noise_no_swap_pred_uncond, noise_swap_pred_text = noise_pred_swap.chunk(2)
        noise_pred = noise_no_swap_pred_uncond + CFG * (noise_swap_pred_text - noise_no_swap_pred_uncond)

        def perform_ddpm_step(z, latents, noise_pred, eta=1):
            alpha_prod_t = alphas_cumprod[t]
            alpha_prod_t_prev = alphas_cumprod[timesteps[i + 1]] if i + 1 < len(timesteps) else final_alpha_cumprod
            beta_prod_t = 1 - alpha_prod_t
            pred_original_sample = (latents - beta_prod_t ** (0.5) * noise_pred) / alpha_prod_t ** (0.5)
            variance = ((1 - alpha_prod_t_prev) / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)
            pred_sample_direction = (1 - alpha_prod_t_prev - eta * variance) ** (0.5) * noise_pred
            prev_sample = alpha_prod_t_prev ** (0.5) * pred_original_sample + pred_sample_direction
            return prev_sample + eta * variance ** (0.5) * z

        latents = torch.stack([
            perform_ddpm_step(zs[idx][i], latents[idx], noise_pred[idx]) for idx in range(latents.shape[0])
        ])
        callback(i, t, latents)
    return latents[0]


# ----------------------------------------------------------------------------------------------------------------
# The pack
# ----------------------------------------------------------------------------------------------------------------


def pack_generation(node, model, target, reference, masks=None, source="live branches", behaviour="published code", cfg=CFG, **schedule):
    mask_inputs = {} if masks is None else {"target_mask": masks["target"], "reference_mask": masks["reference"]}
    schedule = {"start": FEAT_START, "end": -1, "refresh_every": REFRESH_EVERY, "refresh_until": REFRESH_UNTIL, **schedule}
    (patched,) = run_node(
        node("E4E_ApplyEyeForEye"), model=model, reference_inversion=reference, target_inversion=target,
        mode="rearrange features (q, k, v)", feature_source=source, behaviour=behaviour, **mask_inputs, **schedule,
    )
    (out,) = run_node(
        node("E4E_KSampler"), model=patched, positive=conditioning(10), negative=conditioning(11), target_inversion=target,
        reference_inversion=reference, cfg=cfg, adain_start=ADAIN_START, **mask_inputs,
    )
    return model.model.process_latent_in(out["samples"])[0]


@pytest.mark.parametrize("masked", [False, True], ids=["no masks", "soft-edged masks"])
@pytest.mark.parametrize("quirks", [True, False], ids=["published code", "paper"])
def test_live_branches_equal_a_literal_translation_of_the_published_code(node, model, inversions, masked, quirks):
    target, reference = inversions["target"], inversions["reference"]
    masks = MASKS if masked else None
    expected = published_generation(model, target, reference, masks, quirks)
    got = pack_generation(node, model, target, reference, masks, behaviour="published code" if quirks else "paper")
    difference = float((got - expected).abs().max())
    print(f"live branches + {'published code' if quirks else 'paper'}, {'masks' if masked else 'no masks'}: max |diff| = {difference:.2e}")
    assert difference <= 1e-4
    # The comparison can fail: the other behaviour, and the recorded features, land elsewhere.
    other = pack_generation(node, model, target, reference, masks, behaviour="paper" if quirks else "published code")
    assert float((other - expected).abs().max()) > 1e-3
    if not quirks:
        recorded = pack_generation(node, model, target, reference, masks, source="recorded at inversion", behaviour="paper")
        assert float((recorded - expected).abs().max()) > 1e-3


def test_live_and_recorded_agree_when_sampling_guidance_equals_inversion_guidance(node, model, inversions):
    target, reference = inversions["target"], inversions["reference"]
    live = pack_generation(node, model, target, reference, MASKS, behaviour="paper", cfg=3.5)
    recorded = pack_generation(node, model, target, reference, MASKS, source="recorded at inversion", behaviour="paper", cfg=3.5)
    assert float((live - recorded).abs().max()) <= 1e-3


def test_live_branches_need_no_stored_features(node, model, inversions):
    def invert(image_seed):
        (inv,) = run_node(
            node("E4E_Invert"), model=model, positive=conditioning(10), negative=conditioning(11), latent=latent(image_seed, 16),
            steps=STEPS, skip=SKIP, cfg=3.5, seed=5, scheduler="ddim_uniform", record_features=False,
        )
        return inv

    target, reference = invert(3), invert(4)
    assert target.features.layers == [] and torch.equal(target.noise_maps, inversions["target"].noise_maps)
    with_bank = pack_generation(node, model, inversions["target"], inversions["reference"])
    without = pack_generation(node, model, target, reference)
    assert torch.equal(with_bank, without)
    with pytest.raises(ValueError, match="feature_source"):
        pack_generation(node, model, target, reference, source="recorded at inversion", behaviour="paper")


def test_features_are_stored_in_the_models_compute_dtype(inversions):
    bank = inversions["target"].features
    assert all(t.dtype == torch.float32 for t in bank.features.values())


def test_published_refresh_needs_live_branches_and_live_needs_the_replay_sampler(node, model, inversions):
    target, reference = inversions["target"], inversions["reference"]
    with pytest.raises(ValueError, match="behaviour: .*live branches"):
        pack_generation(node, model, target, reference, source="recorded at inversion", behaviour="published code")
    # without a refresh, published rules work on recorded features too
    pack_generation(node, model, target, reference, source="recorded at inversion", behaviour="published code", refresh_every=0)
    (patched,) = run_node(
        node("E4E_ApplyEyeForEye"), model=model, reference_inversion=reference, target_inversion=target, start=0, end=-1,
        refresh_every=0, refresh_until=0, mode="rearrange features (q, k, v)", feature_source="live branches",
    )
    with pytest.raises(ValueError, match="model: .*live branches"):
        node("KSampler")().sample(patched, 0, 3, 2.5, "euler", "normal", conditioning(10), conditioning(11), latent(3, 16), denoise=1.0)


def test_live_patch_reads_the_sigma_once_per_model_call(host, node, model, inversions):
    target, reference = inversions["target"], inversions["reference"]
    (patched,) = run_node(
        node("E4E_ApplyEyeForEye"), model=model, reference_inversion=reference, target_inversion=target,
        mode="rearrange features (q, k, v)", feature_source="live branches", behaviour="paper",
        start=FEAT_START, end=-1, refresh_every=REFRESH_EVERY, refresh_until=REFRESH_UNTIL,
    )
    patch = host.pack.core.live_branches.live_patch(patched.model_options)
    reads, seen = [], []
    plain_phase_at = patch.phase_at
    patch.phase_at = lambda sigma: reads.append(sigma) or plain_phase_at(sigma)

    class Observer:  # an object patch (a plain function would count as a model change to the provenance check)
        def __call__(self, n, context, value, extra_options):
            seen.append(extra_options["sigmas"])  # kept alive, so every model call's tensor stays distinct
            return n, context, value

    observed = patched.clone()
    observed.set_model_attn1_patch(Observer())
    try:
        run_node(node("E4E_KSampler"), model=observed, positive=conditioning(10), negative=conditioning(11),
                 target_inversion=target, reference_inversion=reference, cfg=CFG, adain_start=ADAIN_START)
    finally:
        del patch.phase_at
    model_calls = len({id(s) for s in seen})
    assert model_calls == STEPS - SKIP and len(seen) > 2 * model_calls  # several patched layers per call
    assert len(reads) == model_calls
