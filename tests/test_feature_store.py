"""What the transfer keeps of the recorded features, and where it reads them from."""

import pytest
import torch

from conftest import invert_pair, run_node
from tiny_models import conditioning, tiny_sd15

STEPS, SKIP = 20, 6  # 14 generation steps
SCHEDULE = dict(start=3, end=-1, refresh_every=4, refresh_until=9)  # refresh on 3, 7; rearrange 4-6, 8-13
MODE = "rearrange features (q, k, v)"


@pytest.fixture(scope="module")
def model(host):
    return tiny_sd15(seed=2)


@pytest.fixture(scope="module")
def inversions(node, model):
    return invert_pair(node, model, STEPS, SKIP, cfg=2.5)


def apply(node, model, inversions, **schedule):
    (patched,) = run_node(node("E4E_ApplyEyeForEye"), model=model, reference_inversion=inversions["reference"],
                          target_inversion=inversions["target"], mode=MODE, **{**SCHEDULE, **schedule})
    return patched


def sample(node, model, inversions):
    (out,) = run_node(node("E4E_KSampler"), model=model, positive=conditioning(10), negative=conditioning(11),
                      target_inversion=inversions["target"], reference_inversion=inversions["reference"], cfg=2.5, adain_start=-1)
    return out["samples"]


def our_patch(host, model):
    patch_type = host.pack.core.attention_patch.EyeForEyePatch
    return next(p for p in model.model_options["transformer_options"]["patches"]["attn1_patch"] if isinstance(p, patch_type))


def test_invert_records_generation_steps_at_the_models_dtype(inversions):
    bank = inversions["target"].features
    assert bank.steps == tuple(range(SKIP, STEPS))  # nothing before the skip
    assert {t.dtype for t in bank.features.values()} == {torch.float32}  # an fp32 model keeps fp32
    with pytest.raises(ValueError, match="no features were kept for schedule step 2"):
        bank.at(bank.layers[0], 2)


def test_transfer_keeps_only_what_its_schedule_reads(host, node, model, inversions):
    core = host.pack.core
    target, reference = inversions["target"], inversions["reference"]
    store = our_patch(host, apply(node, model, inversions)).store
    refresh, rearrange = {SKIP + s for s in (3, 7)}, {SKIP + s for s in (4, 5, 6, 8, 9, 10, 11, 12, 13)}
    assert set(store.steps) == refresh | rearrange
    key = core.attention_patch.source_key
    for step, row in store.by_step.items():
        sources = {source for source, _ in row}
        assert sources == ({key(target)} if step in refresh else {key(reference)})
        assert {layer for _, layer in row} == set(target.features.layers)
        for (source, layer), tensor in row.items():
            owner = target if source == key(target) else reference
            assert tensor.data_ptr() == owner.features.at(layer, step).data_ptr()  # a view, not a copy
    per_step = target.features.bytes_per_step()
    assert store.nbytes == (len(refresh) + len(rearrange)) * per_step
    assert store.nbytes < 0.45 * (target.features.nbytes + reference.features.nbytes)


class Observer:
    """An attn1 patch after ours: what each layer call received from the model-call wrapper."""

    def __init__(self, key):
        self.key, self.calls = key, []

    def __deepcopy__(self, memo):
        return self

    def __call__(self, n, context, value, extra_options):
        block = extra_options["block"]
        self.calls.append(((block[0], block[1], extra_options["block_index"]), extra_options.get(self.key)))
        return n, context, value


def test_one_sigma_read_per_model_call_gives_the_same_result(host, node, model, inversions):
    attention_patch = host.pack.core.attention_patch
    patched = apply(node, model, inversions)
    observer = Observer(attention_patch.CALL_KEY)
    observed = patched.clone()
    observed.set_model_attn1_patch(observer)
    result = sample(node, observed, inversions)
    patch = our_patch(host, patched)
    assert observer.calls and all(state is not None and state.owner is patch for _, state in observer.calls)
    first_layer = observer.calls[0][0]
    model_calls = sum(layer == first_layer for layer, _ in observer.calls)
    assert len({id(state) for _, state in observer.calls}) == model_calls  # one state (one sigma read) per call
    assert not patch.store.placed and not patch.store._placed  # released when sampling ends

    # Without the wrappers the patch reads the sigma in every layer: the same result, bit for bit.
    unwrapped = patched.clone()
    for kind in ("outer_sample", "apply_model"):
        unwrapped.remove_wrappers_with_key(kind, host.pack.nodes.bank_placement.WRAPPER_KEY)
    assert torch.equal(sample(node, unwrapped, inversions), result)
    assert not torch.equal(sample(node, model, inversions), result)


def test_store_placements_read_the_same_tensors(host):
    store_type = host.pack.core.feature_store.FeatureStore
    g = torch.Generator().manual_seed(0)
    rows = {s: {("r", ("output", 1, 0)): torch.randn(1, 4, 3, generator=g)} for s in (2, 5, 9)}
    for resident in (False, True):
        store = store_type(rows)
        store.place(torch.device("cpu"), resident)
        assert store.at_step(4) == {}
        for s in (2, 5, 9):
            assert torch.equal(store.at_step(s)[("r", ("output", 1, 0))], rows[s][("r", ("output", 1, 0))])
            store.send_ahead(s)
        store.release()
        assert not store.placed
