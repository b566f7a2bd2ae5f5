"""The batched matcher against a per-token implementation of the published matching."""

import pytest
import torch


def published_nearest(query, reference, reference_mask=None):
    """One similarity map per query token (as the published code loops), masked-out references excluded."""
    batch, tokens, _ = query.shape
    index = torch.zeros(batch, tokens, dtype=torch.long)
    for b in range(batch):
        ref = reference[min(b, reference.shape[0] - 1)]
        allowed = torch.arange(ref.shape[0]) if reference_mask is None else reference_mask[min(b, reference_mask.shape[0] - 1)].nonzero().flatten()
        for t in range(tokens):
            sims = [torch.nn.functional.cosine_similarity(query[b, t], ref[r], dim=0) for r in allowed]
            index[b, t] = allowed[int(torch.stack(sims).argmax())]
    return index


def published_rearrange(own, reference, index, own_mask=None):
    out = own.clone()
    for b in range(own.shape[0]):
        for t in range(own.shape[1]):
            if own_mask is None or own_mask[b, t]:
                out[b, t] = reference[min(b, reference.shape[0] - 1), index[b, t]]
    return out


@pytest.mark.parametrize("masked", [False, True])
def test_batched_matching_equals_per_token_loop(host, masked):
    matching = host.pack.core.matching
    g = torch.Generator().manual_seed(0)
    query = torch.randn(2, 48, 16, generator=g)
    reference = torch.randn(1, 40, 16, generator=g)
    own_mask = ref_mask = None
    if masked:
        own_mask = torch.rand(2, 48, generator=g) > 0.4
        ref_mask = torch.rand(1, 40, generator=g) > 0.5
    expected = published_nearest(query, reference, ref_mask)
    # A tiny chunk forces many chunks: chunking must not change the answer.
    index, similarity = matching.nearest_reference_index(query, reference, ref_mask, chunk_elements=97)
    assert torch.equal(index, expected)
    assert similarity.shape == (2, 48)
    rearranged = matching.rearrange_like(query, reference, index, own_mask)
    assert torch.equal(rearranged, published_rearrange(query, reference, expected, own_mask))
    if masked:
        assert torch.equal(rearranged[~own_mask], query[~own_mask])  # masked-out tokens keep their features
        assert bool(ref_mask[0, index].all())  # masked-out reference tokens are never chosen


@pytest.mark.parametrize("masked", [False, True])
def test_planted_permutation_is_recovered_across_grid_sizes(host, masked):
    matching = host.pack.core.matching
    g = torch.Generator().manual_seed(1)
    reference = torch.randn(1, 24 * 20, 64, generator=g)  # a 24x20 reference grid
    planted = torch.randint(0, reference.shape[1], (1, 16 * 12), generator=g)  # a 16x12 target grid
    query = matching.gather_tokens(reference, planted) + 0.05 * torch.randn(1, 16 * 12, 64, generator=g)
    ref_mask = None
    if masked:
        ref_mask = torch.zeros(1, reference.shape[1], dtype=torch.bool)
        ref_mask[0, planted[0]] = True  # every planted source stays allowed, the rest is masked out
        ref_mask[0, :50] = True
    index, _ = matching.nearest_reference_index(query, reference, ref_mask)
    assert (index == planted).float().mean() >= 0.99


def test_empty_reference_mask_is_refused(host):
    matching = host.pack.core.matching
    with pytest.raises(ValueError, match="reference mask is empty"):
        matching.nearest_reference_index(torch.randn(1, 4, 8), torch.randn(1, 4, 8), torch.zeros(1, 4, dtype=torch.bool))


def test_mirror_aware_matching_keeps_the_better_orientation_and_maps_back(host):
    corr_mod, matching = host.pack.core.correspondence, host.pack.core.matching
    g = torch.Generator().manual_seed(3)
    grid = (6, 8)
    features = lambda t: corr_mod.ImageFeatures(t, grid, ("x",), "test")
    seen = torch.randn(1, 48, 32, generator=g)
    unrelated = torch.randn(1, 48, 32, generator=g)
    planted = torch.randperm(48, generator=g)[None]
    target = features(matching.gather_tokens(seen, planted) + 0.05 * torch.randn(1, 48, 32, generator=g))

    # The reference itself matches: nothing is flipped.
    corr, flipped = corr_mod.mirror_aware_match(target, features(seen), features(unrelated))
    assert not bool(flipped[0]) and torch.equal(corr.index, planted)

    # Only the mirror image matches: indices come back on the unmirrored reference's grid.
    corr, flipped = corr_mod.mirror_aware_match(target, features(unrelated), features(seen))
    h, w = grid
    unmirrored = (planted // w) * w + (w - 1 - planted % w)
    assert bool(flipped[0]) and torch.equal(corr.index, unmirrored)
    assert torch.equal(corr_mod.mirror_tokens(corr_mod.mirror_tokens(seen, grid), grid), seen)


def test_per_image_reference_masks_and_cosine_similarity(host):
    """A mask per batch row takes the -inf path; the returned similarity is the winner's cosine."""
    matching = host.pack.core.matching
    g = torch.Generator().manual_seed(5)
    query = torch.randn(2, 30, 12, generator=g) * torch.rand(2, 30, 1, generator=g) * 9  # rows of very different norms
    reference = torch.randn(2, 25, 12, generator=g)
    ref_mask = torch.rand(2, 25, generator=g) > 0.5
    ref_mask[:, 0] = True
    expected = torch.stack([published_nearest(query[b : b + 1], reference[b : b + 1], ref_mask[b : b + 1])[0] for b in range(2)])
    index, similarity = matching.nearest_reference_index(query, reference, ref_mask, chunk_elements=53)
    assert torch.equal(index, expected)
    chosen = matching.gather_tokens(reference, index)
    assert torch.allclose(similarity, torch.nn.functional.cosine_similarity(query, chosen, dim=-1), atol=1e-5)
