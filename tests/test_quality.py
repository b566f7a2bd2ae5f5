"""The trained creature model (a test asset) and a smoke subset of the part-transfer benchmark."""

import contextlib
import io
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_node

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from quality import benchmark  # noqa: E402
from quality import creature_model as cm  # noqa: E402
from quality import diagnostics  # noqa: E402
from quality.creatures import draw_creatures  # noqa: E402
from quality.diagnostics import pck  # noqa: E402


@pytest.fixture(scope="module")
def creature_model(host):
    return cm.load_model_patcher()


def test_asset_is_small_and_documented():
    import json

    assert cm.ASSET.stat().st_size <= 20 * 2**20
    record = json.loads(cm.ASSET.with_suffix(".json").read_text())
    assert {"seed", "steps", "unet_config"} <= set(record)


def test_trained_features_find_parts_on_held_out_pairs(node, creature_model):
    """DIFT features from the pack's own node, on pairs the model never saw: PCK@0.1 >= 0.4
    (same-pixel-position matching scores about 0.2 and untrained weights about 0.15)."""
    generator = torch.Generator().manual_seed(777_001)
    targets, references = draw_creatures(60, generator, flip=False), draw_creatures(60, generator, flip=False)

    def features(images):
        (out,) = run_node(node("E4E_ExtractFeatures"), model=creature_model, positive=cm.empty_conditioning(),
                          latent={"samples": cm.encode(images)}, resolution=benchmark.Settings.fixed_resolution,
                          layer="all", timestep=250, ensemble=4, seed=0, step=0)
        return out

    t, r = features(targets.images), features(references.images)
    score = pck(targets.centres, references.centres, t.tokens, r.tokens, t.grid)
    assert score["pck"] >= 0.4, score["pck"]


def test_metrics_score_a_perfect_and_a_wrong_recolouring():
    t, r = benchmark.draw_pairs(4, opposite=False, seed=5)
    perfect = t.images.clone()
    swapped = t.images.clone()
    for p in range(4):
        mask = t.part_masks[:, p][:, None]
        perfect = torch.where(mask, r.part_colours[:, p, :, None, None], perfect)
        swapped = torch.where(mask, r.part_colours[:, (p + 1) % 4, :, None, None], swapped)
    good = benchmark.summarise(benchmark.metrics(perfect, t, r))
    bad = benchmark.summarise(benchmark.metrics(swapped, t, r))
    assert good["part_colour_accuracy"] == 1.0 and good["part_delta_e"] < 1.0
    # the silhouette is read by contrast with the target's background, which a reference colour may resemble
    assert good["silhouette_iou"] > 0.9 and good["background_delta_e"] < 1e-3
    same = benchmark.summarise(benchmark.metrics(t.images, t, r))
    assert same["silhouette_iou"] == 1.0 and same["background_delta_e"] < 1e-3
    assert bad["part_colour_accuracy"] == 0.0 and bad["part_delta_e"] > 10


def test_benchmark_smoke_subset(host, creature_model, tmp_path):
    report = benchmark.run(host.nodes, creature_model, 2, benchmark.Settings(steps=12, skip=4, start=1, refresh_every=3, refresh_until=4, adain_start=6), 2, tmp_path)
    assert set(report["methods"]) == set(benchmark.METHODS)
    plain = report["methods"]["plain_replay"]["same"]
    assert plain["silhouette_iou"] > 0.9 and plain["background_delta_e"] < 5  # replay reconstructs the target
    assert {"e4e_best_part_colour_accuracy_same", "kv_swap_part_colour_accuracy_same", "e4e_best_silhouette_iou"} <= set(report)
    assert (tmp_path / "strip_same.png").exists()


def test_every_diagnostics_command_in_the_docs_and_the_makefile_parses():
    """Each `python quality/diagnostics.py <subcommand> ...` in docs/*.md (and the Makefile's) names a real
    subcommand with options it takes: a renamed or removed subcommand or option fails here."""
    sources = sorted((REPO / "docs").glob("*.md")) + [REPO / "Makefile"]
    commands = [(source.name, match.group(1).strip()) for source in sources
                for match in re.finditer(r"(?:python|\$\(PY\)) quality/diagnostics\.py([^`#\n]*)", source.read_text())]
    assert len(commands) >= 5, commands  # the pattern still finds the documented commands
    refused = []
    for source, words in commands:
        message = io.StringIO()
        with contextlib.redirect_stderr(message):
            try:
                diagnostics.build_parser().parse_args(shlex.split(words))
            except SystemExit:
                refused.append(f"{source}: diagnostics.py {words}: {message.getvalue().strip().splitlines()[-1]}")
    assert not refused, "\n".join(refused)
