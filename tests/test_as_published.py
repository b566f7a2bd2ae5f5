"""The documented run as published, piece by piece, against literal translations of the authors' code
(sooyeon-go/eye_for_an_eye), on tiny real ComfyUI UNets with seeded random weights.

- FreeU: their FreeUUNet2DConditionModel.forward (models/unet_2d_condition.py), written over the tiny UNet's
  own modules (diffusers' up block i = the i-th group of num_res_blocks + 1 output blocks), against
  E4E_FreeUPublished. Their 1280 / 640 are 4x / 2x model_channels (128 / 64 on the tiny UNet).
- The whole run: their generation stage (tests/test_faithful.py's translation, imported) on their FreeU UNet,
  with masks into matching and masked AdaIN, against FreeU (as published) -> Invert -> Apply (live branches,
  published code) -> KSampler (Eye-for-an-eye).

Each comparison is paired with a check that it can fail: the piece switched off or swapped lands elsewhere.
"""

from __future__ import annotations

import pytest
import torch

from conftest import run_node
from tiny_models import conditioning, tiny_sd15

# their hard-coded numbers (models/unet_2d_condition.py)
B1, B2, S1, S2 = 1.2, 1.4, 0.9, 0.2


# ----------------------------------------------------------------------------------------------------------------
# Their FreeU UNet, translated
# ----------------------------------------------------------------------------------------------------------------


def Fourier_filter(x, threshold, scale):
    """Their Fourier_filter (the mask is made on x's device instead of .cuda())."""
    x_freq = torch.fft.fftn(x, dim=(-2, -1))
    x_freq = torch.fft.fftshift(x_freq, dim=(-2, -1))
    B, C, H, W = x_freq.shape
    mask = torch.ones((B, C, H, W), device=x.device)
    crow, ccol = H // 2, W // 2
    mask[..., crow - threshold:crow + threshold, ccol - threshold:ccol + threshold] = scale
    x_freq = x_freq * mask
    x_freq = torch.fft.ifftshift(x_freq, dim=(-2, -1))
    return torch.fft.ifftn(x_freq, dim=(-2, -1)).real


def their_freeu_unet(unet, sample, timesteps, context, transformer_options=None, freeu=True):
    """FreeUUNet2DConditionModel.forward on a ComfyUI UNet: down, mid, then per up block the Free-U trick on the
    backbone `sample` before the block. `transformer_options` carries attention patches (e.g. their processor)."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import forward_timestep_embed, timestep_embedding

    options = {"patches": {}, **(transformer_options or {})}
    options["original_shape"] = list(sample.shape)
    options["transformer_index"] = 0
    big, small = 4 * unet.model_channels, 2 * unet.model_channels  # 1280 and 640 in SD1.5
    emb = unet.time_embed(timestep_embedding(timesteps, unet.model_channels, repeat_only=False).to(sample.dtype))
    down_block_res_samples = []
    for i, module in enumerate(unet.input_blocks):
        options["block"] = ("input", i)
        sample = forward_timestep_embed(module, sample, emb, context, options)
        down_block_res_samples.append(sample)
    options["block"] = ("middle", 0)
    sample = forward_timestep_embed(unet.middle_block, sample, emb, context, options)
    per_block = len(unet.output_blocks) // len(unet.channel_mult)  # resnets per up block
    up_blocks = [list(range(k, k + per_block)) for k in range(0, len(unet.output_blocks), per_block)]
    for upsample_block in up_blocks:
        # Add the Free-U trick here!
        if freeu and sample.shape[1] == big:
            sample[:, :big // 2] *= B1
            sample = Fourier_filter(sample, threshold=1, scale=S1)
        if freeu and sample.shape[1] == small:
            sample[:, :small // 2] *= B2
            sample = Fourier_filter(sample, threshold=1, scale=S2)
        for i in upsample_block:
            options["block"] = ("output", i)
            sample = torch.cat([sample, down_block_res_samples.pop()], dim=1)
            output_shape = down_block_res_samples[-1].shape if down_block_res_samples else None
            sample = forward_timestep_embed(unet.output_blocks[i], sample, emb, context, options, output_shape)
    return unet.out(sample)


# ----------------------------------------------------------------------------------------------------------------
# FreeU (as published)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(host):
    return tiny_sd15(seed=1)


def unet_call(model, x, t, context):
    """The pack's side: the patched model's UNet with the model's own transformer_options (its FreeU patch)."""
    options = model.model_options["transformer_options"]
    return model.model.diffusion_model(x, t, context=context, transformer_options={**options, "patches": dict(options.get("patches", {}))})


def test_freeu_equals_their_freeu_unet(node, model):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 16, 16, generator=generator)
    t = torch.tensor([500.0, 500.0])
    context = torch.cat([conditioning(10)[0][0], conditioning(11)[0][0]])
    (patched,) = run_node(node("E4E_FreeUPublished"), model=model, b1=B1, b2=B2, s1=S1, s2=S2)
    unet = model.model.diffusion_model
    expected = their_freeu_unet(unet, x, t, context)
    got = unet_call(patched, x, t, context)
    difference = float((got - expected).abs().max())
    print(f"FreeU (as published) vs their FreeU UNet: max |diff| = {difference:.2e}")
    assert difference <= 1e-5
    # it can fail: no FreeU, and ComfyUI's FreeU node (skip filtered, every block scaled), land elsewhere
    assert float((unet_call(model, x, t, context) - expected).abs().max()) > 1e-3
    assert float((their_freeu_unet(unet, x.clone(), t, context, freeu=False) - got).abs().max()) > 1e-3
    (comfy_freeu,) = node("FreeU")().patch(model, B1, B2, S1, S2)
    assert float((unet_call(comfy_freeu, x, t, context) - expected).abs().max()) > 1e-3
    assert patched is not model and "output_block_patch" not in model.model_options["transformer_options"].get("patches", {})


def test_freeu_is_applied_once_and_refuses_other_families_and_comfys_freeu(host, node, model):
    from tiny_models import tiny_sdxl

    freeu = node("E4E_FreeUPublished")
    (once,) = run_node(freeu, model=model, b1=B1, b2=B2, s1=S1, s2=S2)
    (again,) = run_node(freeu, model=once, b1=B1, b2=B2, s1=S1, s2=S2)
    (other,) = run_node(freeu, model=once, b1=1.0, b2=1.0, s1=1.0, s2=1.0)
    patches = lambda m: m.model_options["transformer_options"]["patches"]["output_block_patch"]  # noqa: E731
    assert patches(again) == patches(once) and len(patches(again)) == 1  # same numbers: nothing changes
    assert len(patches(other)) == 1 and patches(other)[0] is not patches(once)[0]  # other numbers replace it
    run_node(freeu, model=tiny_sdxl(seed=2), b1=B1, b2=B2, s1=S1, s2=S2)  # SDXL has the stage layout too
    (comfy_freeu,) = node("FreeU")().patch(model, B1, B2, S1, S2)
    with pytest.raises(ValueError, match="model: it already carries ComfyUI's FreeU"):
        run_node(freeu, model=comfy_freeu, b1=B1, b2=B2, s1=S1, s2=S2)
    flux_like = model.clone()
    flux_like.model = type("Model", (), {"model_config": type("Flux", (), {})()})()
    with pytest.raises(host.pack.nodes.model_info.UnsupportedModelError, match="model: the MODEL is a Flux model"):
        run_node(freeu, model=flux_like, b1=B1, b2=B2, s1=S1, s2=S2)


# ----------------------------------------------------------------------------------------------------------------
# Object masks from attention: their Segmentor, translated
# ----------------------------------------------------------------------------------------------------------------

STYLE_INDEX, STRUCT_INDEX = 1, 2  # constants.py: rows of the six-row batch (the unconditional reference and target)
# nltk's NN tags for the prompt ("photo" excluded), written out. The random tiny model's attention gives the noun's
# column a qualifying segment in both images only at some columns and steps (the published "a photo of a bird",
# column 5, at the tiny run's first AdaIN step 9 has none): column 1 at generation step 3 has.
PROMPT, NOUNS = "bird in a photo", [(0, "bird")]
MASK_STEP = 3


class Segmentor:
    """utils/segmentation.py with its grid sizes for a 16x16 latent: their 64 / 32 / 16 are G / G/2 / G/4 (G = 16)
    and nltk's tags given as `nouns`. `kmeans` builds the clustering (sklearn's KMeans unless the test says)."""

    def __init__(self, prompt, object_nouns, nouns, grid, num_segments=5, kmeans=None):
        from sklearn.cluster import KMeans

        self.prompt = prompt
        self.num_segments = num_segments
        self.object_nouns = object_nouns
        self.nouns = nouns
        self.G = grid
        self.KMeans = kmeans or (lambda: KMeans(n_clusters=self.num_segments, n_init=10))

    def update_attention(self, attn, is_cross):
        res = int(attn.shape[2] ** 0.5)
        if is_cross:
            if res == self.G // 4:
                self.cross_attention_32 = attn
            elif res == self.G // 2:
                self.cross_attention_64 = attn
        else:
            if res == self.G // 2:
                self.self_attention_32 = attn
            elif res == self.G:
                self.self_attention_64 = attn

    def cluster(self, res):
        import numpy as np

        np.random.seed(1)
        self_attn = self.self_attention_32 if res == self.G // 2 else self.self_attention_64
        style_attn = self_attn[STYLE_INDEX].mean(dim=0).cpu().numpy()
        style_kmeans = self.KMeans().fit(style_attn)
        style_clusters = style_kmeans.labels_.reshape(res, res)
        struct_attn = self_attn[STRUCT_INDEX].mean(dim=0).cpu().numpy()
        struct_kmeans = self.KMeans().fit(struct_attn)
        struct_clusters = struct_kmeans.labels_.reshape(res, res)
        return style_clusters, struct_clusters

    def cluster2noun(self, clusters, cross_attn, attn_index):
        import numpy as np

        result = {}
        res = int(cross_attn.shape[2] ** 0.5)
        nouns_indices = [index for (index, word) in self.nouns]
        cross_attn = cross_attn[attn_index].mean(dim=0).reshape(res, res, -1)
        nouns_maps = cross_attn.cpu().numpy()[:, :, [i + 1 for i in nouns_indices]]
        normalized_nouns_maps = np.zeros_like(nouns_maps).repeat(2, axis=0).repeat(2, axis=1)
        for i in range(nouns_maps.shape[-1]):
            curr_noun_map = nouns_maps[:, :, i].repeat(2, axis=0).repeat(2, axis=1)
            normalized_nouns_maps[:, :, i] = (curr_noun_map - np.abs(curr_noun_map.min())) / curr_noun_map.max()
        max_score = 0
        all_scores = []
        for c in range(self.num_segments):
            cluster_mask = np.zeros_like(clusters)
            cluster_mask[clusters == c] = 1
            score_maps = [cluster_mask * normalized_nouns_maps[:, :, i] for i in range(len(nouns_indices))]
            scores = [score_map.sum() / cluster_mask.sum() for score_map in score_maps]
            all_scores.append(max(scores))
            max_score = max(max(scores), max_score)
        all_scores.remove(max_score)
        mean_score = sum(all_scores) / len(all_scores)
        for c in range(self.num_segments):
            cluster_mask = np.zeros_like(clusters)
            cluster_mask[clusters == c] = 1
            score_maps = [cluster_mask * normalized_nouns_maps[:, :, i] for i in range(len(nouns_indices))]
            scores = [score_map.sum() / cluster_mask.sum() for score_map in score_maps]
            result[c] = self.nouns[np.argmax(np.array(scores))] if max(scores) > 1.4 * mean_score else "BG"
        return result

    def create_mask(self, clusters, cross_attention, attn_index):
        cluster2noun = self.cluster2noun(clusters, cross_attention, attn_index)
        mask = clusters.copy()
        obj_segments = [c for c in cluster2noun if cluster2noun[c][1] in self.object_nouns]
        for c in range(self.num_segments):
            mask[clusters == c] = 1 if c in obj_segments else 0
        return torch.from_numpy(mask)

    def get_object_masks(self):
        clusters_style_32, clusters_struct_32 = self.cluster(res=self.G // 2)
        clusters_style_64, clusters_struct_64 = self.cluster(res=self.G)
        mask_style_32 = self.create_mask(clusters_style_32, self.cross_attention_32, STYLE_INDEX)
        mask_struct_32 = self.create_mask(clusters_struct_32, self.cross_attention_32, STRUCT_INDEX)
        mask_style_64 = self.create_mask(clusters_style_64, self.cross_attention_64, STYLE_INDEX)
        mask_struct_64 = self.create_mask(clusters_struct_64, self.cross_attention_64, STRUCT_INDEX)
        return mask_style_32, mask_struct_32, mask_style_64, mask_struct_64


def their_attention_processor(segmentor, is_cross):
    """The part of their AttentionProcessor that feeds the Segmentor: compute_scaled_dot_product_attention's
    weights handed to update_attention, as a ComfyUI attention replace patch (q, k, v already projected)."""
    import math

    def attention(query, key, value, extra_options):
        heads = extra_options["n_heads"]
        batch_size = query.shape[0]
        head_dim = key.shape[-1] // heads
        query = query.view(batch_size, -1, heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, heads, head_dim).transpose(1, 2)
        attn_weight = torch.softmax((query @ key.transpose(-2, -1) / math.sqrt(query.size(-1))), dim=-1)
        segmentor.update_attention(attn_weight, is_cross)
        return (attn_weight @ value).transpose(1, 2).reshape(batch_size, -1, heads * head_dim)

    return attention


def every_attention_layer(unet):
    from comfy.ldm.modules.attention import SpatialTransformer

    keys = []
    for name, blocks in (("input", unet.input_blocks), ("middle", [unet.middle_block]), ("output", unet.output_blocks)):
        for i, block in enumerate(blocks):
            for module in block:
                if isinstance(module, SpatialTransformer):
                    keys += [(name, i, j) for j in range(len(module.transformer_blocks))]
    return keys


def their_segmentor_masks(model, target, reference, step, kmeans=None):
    """Their UNet call at generation step `step` on the six-row batch [result, reference, target] x [uncond, cond],
    every attention layer feeding the Segmentor, then get_object_masks (their 'style' is the reference)."""
    import math

    unet = model.model.diffusion_model
    sampling = model.model.model_sampling
    sigma = float(target.generation_sigmas[step])
    grid = int(target.latents.shape[-1])
    segmentor = Segmentor(PROMPT, ["bird"], NOUNS, grid, kmeans=kmeans)
    latents = torch.stack([inv.latents[step][0] for inv in (target, reference, target)]) / math.sqrt(1.0 + sigma**2)
    prompt_embeds = torch.cat([conditioning(11)[0][0]] * 3 + [conditioning(10)[0][0]] * 3)
    keys = every_attention_layer(unet)
    options = {"patches_replace": {
        "attn1": {key: their_attention_processor(segmentor, False) for key in keys},
        "attn2": {key: their_attention_processor(segmentor, True) for key in keys},
    }}
    t = sampling.timestep(torch.tensor(sigma)).float()
    their_freeu_unet(unet, torch.cat([latents] * 2), t.expand(6), prompt_embeds, options)
    return segmentor


def pack_masks(node, model, target, reference, step=MASK_STEP, **inputs):
    values = {"prompt": PROMPT, "object_noun": "bird", "step": step, "attention": "unconditional (as published)", "segments": 5, "threshold": 1.4, **inputs}
    return run_node(node("E4E_AttentionMasks"), model=model, positive=conditioning(10), negative=conditioning(11),
                    target_inversion=target, reference_inversion=reference, **values)


@pytest.fixture(scope="module")
def freeu_model(node, model):
    (patched,) = run_node(node("E4E_FreeUPublished"), model=model, b1=B1, b2=B2, s1=S1, s2=S2)
    return patched


@pytest.fixture(scope="module")
def freeu_inversions(node, freeu_model):
    from conftest import invert_pair
    from test_faithful import SKIP, STEPS

    return invert_pair(node, freeu_model, STEPS, SKIP, cfg=3.5)


def same_partition(a, b) -> bool:
    """Labels equal up to renaming the segments."""
    pairs = set(zip(a.flatten().tolist(), b.flatten().tolist()))
    return len(pairs) == len({x for x, _ in pairs}) == len({y for _, y in pairs})




def test_attention_masks_equal_their_segmentor(host, node, freeu_model, freeu_inversions):
    """Both k-means start from the same centres: the pack's best seeded k-means++ start on the literal side's
    data, handed to scikit-learn's KMeans(init=..., n_init=1) inside their cluster()."""
    from sklearn.cluster import KMeans

    target, reference = freeu_inversions["target"], freeu_inversions["reference"]
    seg = their_segmentor_masks(freeu_model, target, reference, MASK_STEP)
    kmeans = host.pack.core.segmentation.kmeans
    starts = iter([kmeans(seg.self_attention_64[i].mean(dim=0), 5)[2].numpy() for i in (STYLE_INDEX, STRUCT_INDEX)])
    seg.KMeans = lambda: KMeans(n_clusters=5, init=next(starts), n_init=1)
    style_clusters, struct_clusters = seg.cluster(res=seg.G)
    their_reference = seg.create_mask(style_clusters, seg.cross_attention_64, STYLE_INDEX).float()
    their_target = seg.create_mask(struct_clusters, seg.cross_attention_64, STRUCT_INDEX).float()
    target_mask, reference_mask, picture = pack_masks(node, freeu_model, target, reference)
    cell = target.image_downscale
    print(f"attention masks: target {int(their_target.sum())} / reference {int(their_reference.sum())} of 256 cells; "
          f"cells that differ: {int((target_mask[0, ::cell, ::cell] != their_target).sum())}, "
          f"{int((reference_mask[0, ::cell, ::cell] != their_reference).sum())}")
    assert torch.equal(target_mask[0, ::cell, ::cell], their_target) and torch.equal(reference_mask[0, ::cell, ::cell], their_reference)
    assert 0 < their_target.sum() < 256 and 0 < their_reference.sum() < 256
    assert target_mask.shape == (1, 128, 128) and picture.shape == (1, 128, 256, 3)
    # it can fail: the conditional rows, or another noun column, give other masks (or none)
    for other in ({"attention": "conditional"}, {"prompt": "a bird in a photo"}):
        try:
            t, r, _ = pack_masks(node, freeu_model, target, reference, **other)
        except ValueError:
            continue
        assert not (torch.equal(t[0, ::cell, ::cell], their_target) and torch.equal(r[0, ::cell, ::cell], their_reference))


def test_segment_labels_equal_their_cluster2noun_with_competing_nouns(host):
    """Two nouns compete (so their per-noun normalisation matters) on random segmentations and cross-attention."""
    label_segments = host.pack.core.segmentation.label_segments
    nouns = [(0, "bird"), (3, "branch")]
    kept = branch_won = 0
    for seed in range(40):
        generator = torch.Generator().manual_seed(seed)
        coarse = torch.randint(5, (8, 8), generator=generator)
        coarse.view(-1)[:5] = torch.arange(5)  # no empty segment
        clusters = coarse.repeat_interleave(2, dim=0).repeat_interleave(2, dim=1)
        logits = torch.randn(1, 2, 64, 12, generator=generator)
        for column in (1, 4):  # each noun drawn to a random segment, by a random amount
            logits[..., coarse.flatten() == int(torch.randint(5, (1,), generator=generator)), column] += 3 * float(torch.rand(1, generator=generator))
        cross = torch.softmax(logits, dim=-1)
        seg = Segmentor("bird on a branch", ["bird"], nouns, 16)
        theirs = seg.create_mask(clusters.numpy(), cross, 0).float()
        ours = label_segments(clusters, cross[0].mean(dim=0), [(c + 1, w) for c, w in nouns], "bird", 5, 1.4)
        assert torch.equal(ours.mask, theirs), seed
        kept += bool(ours.kept)
        branch_won += any(v != "BG" and v[1] == "branch" for v in seg.cluster2noun(clusters.numpy(), cross, 0).values())
    assert kept >= 5 and branch_won >= 5, (kept, branch_won)


def test_attention_masks_refuse_what_they_cannot_use(node, freeu_model, freeu_inversions):
    target, reference = freeu_inversions["target"], freeu_inversions["reference"]
    with pytest.raises(ValueError, match="object_noun: 'cat' is not a word of the prompt"):
        pack_masks(node, freeu_model, target, reference, object_noun="cat")
    with pytest.raises(ValueError, match="other_nouns: 'photo' is never a noun"):
        pack_masks(node, freeu_model, target, reference, other_nouns="photo")
    with pytest.raises(ValueError, match="threshold: no segment of the target qualifies as 'bird'"):
        pack_masks(node, freeu_model, target, reference, threshold=9.0)
    with pytest.raises(ValueError, match="step: got 14"):
        pack_masks(node, freeu_model, target, reference, step=14)


# ----------------------------------------------------------------------------------------------------------------
# The whole documented run
# ----------------------------------------------------------------------------------------------------------------


def their_model(model, freeu=True):
    """What test_faithful's published_generation reads from a model, with their FreeU UNet as the UNet."""
    from types import SimpleNamespace

    unet = model.model.diffusion_model

    def freeu_unet(x, timesteps, context=None, transformer_options=None):
        return their_freeu_unet(unet, x, timesteps, context, transformer_options, freeu=freeu)

    return SimpleNamespace(model=SimpleNamespace(diffusion_model=freeu_unet, model_sampling=model.model.model_sampling))


def test_the_whole_published_run_equals_a_literal_translation(node, model, freeu_model, freeu_inversions):
    """Their FreeU UNet during inversion and generation, masks into matching and masked AdaIN, live branches with
    the published rules, guidance 2.5: FreeU (as published) -> Invert -> Apply -> KSampler (Eye-for-an-eye)."""
    from test_faithful import MASKS, pack_generation, published_generation

    target, reference = freeu_inversions["target"], freeu_inversions["reference"]
    expected = published_generation(their_model(model), target, reference, MASKS, quirks=True)
    got = pack_generation(node, freeu_model, target, reference, MASKS)
    difference = float((got - expected).abs().max())
    print(f"whole published run (their FreeU, masks, live branches, published code): max |diff| = {difference:.2e}")
    assert difference <= 1e-4
    # it can fail: without their FreeU, or without the masks, the translation lands elsewhere
    assert float((published_generation(their_model(model, freeu=False), target, reference, MASKS) - got).abs().max()) > 1e-3
    assert float((published_generation(their_model(model), target, reference, None) - got).abs().max()) > 1e-3


def tiny_lora(model):
    """A weight patch as LoraLoaderModelOnly adds one (a clone with add_patches)."""
    patched = model.clone()
    weight = model.model.diffusion_model.out[2].weight
    delta = torch.randn(weight.shape, generator=torch.Generator().manual_seed(7)) * 0.05
    assert patched.add_patches({"diffusion_model.out.2.weight": (delta,)}, 1.0)
    return patched


def test_freeu_composes_with_lora_and_apply_in_either_order(node, model, freeu_model, freeu_inversions):
    from conftest import invert_pair
    from test_faithful import MASKS, SKIP, STEPS, pack_generation

    freeu = lambda m: run_node(node("E4E_FreeUPublished"), model=m, b1=B1, b2=B2, s1=S1, s2=S2)[0]  # noqa: E731
    results = []
    for patched in (freeu(tiny_lora(model)), tiny_lora(freeu(model))):  # LoRA then FreeU, FreeU then LoRA
        inversions = invert_pair(node, patched, STEPS, SKIP, cfg=3.5)
        results.append(pack_generation(node, patched, inversions["target"], inversions["reference"], MASKS))
    assert torch.equal(results[0], results[1])
    plain = pack_generation(node, freeu_model, freeu_inversions["target"], freeu_inversions["reference"], MASKS)
    assert float((results[0] - plain).abs().max()) > 1e-3  # the LoRA counts

    # Apply then FreeU (the same numbers on the model the inversions were made with) samples the same result
    target, reference = freeu_inversions["target"], freeu_inversions["reference"]
    apply = dict(mode="rearrange features (q, k, v)", feature_source="live branches", behaviour="published code", start=4,
                 end=-1, refresh_every=2, refresh_until=9, target_mask=MASKS["target"], reference_mask=MASKS["reference"])
    sample = dict(positive=conditioning(10), negative=conditioning(11), target_inversion=target, reference_inversion=reference,
                  cfg=2.5, adain_start=9, target_mask=MASKS["target"], reference_mask=MASKS["reference"])
    (applied,) = run_node(node("E4E_ApplyEyeForEye"), model=freeu_model, reference_inversion=reference, target_inversion=target, **apply)
    (out,) = run_node(node("E4E_KSampler"), model=freeu(applied), **sample)
    assert torch.equal(model.model.process_latent_in(out["samples"])[0], plain)
    # ... but FreeU after Apply on a model whose inversions were made without it is refused, naming the model
    plain_inversions = invert_pair(node, model, STEPS, SKIP, cfg=3.5)
    (applied,) = run_node(node("E4E_ApplyEyeForEye"), model=model, reference_inversion=plain_inversions["reference"],
                          target_inversion=plain_inversions["target"], **apply)
    with pytest.raises(ValueError, match=r"model \[.*output_block_patch.*\] is not the model target_inversion was made with"):
        run_node(node("E4E_KSampler"), model=freeu(applied), **{**sample, "target_inversion": plain_inversions["target"],
                                                                  "reference_inversion": plain_inversions["reference"]})
