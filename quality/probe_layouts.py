"""Which UNet layout lets the rearrangement move colour? A quick probe of creature-model layouts.

For each candidate layout in quality.creature_model.LAYOUTS: train briefly with the shipped recipe
(quality/train_creatures.py, same seed: the first --stop-after steps of a --steps run, so a probe of
the shipped layout equals the shipped run's snapshot at that step), then run the part-transfer benchmark's ground-truth
correspondence oracle (perfect matching, so only the injection is tested) against AdaIN only and
plain replay on a few same-orientation pairs. The layout whose oracle beats AdaIN only by the most
is the one where rearranging the decoder's self-attention carries colour.

    python quality/probe_layouts.py --stop-after 1000 --pairs 16     # about 15 minutes a layout here
    python quality/probe_layouts.py --layouts sd-like --reuse .e4e/probe/sd-like.step1000.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from quality import benchmark as B  # noqa: E402
from quality import creature_model as cm  # noqa: E402
from quality import train_creatures  # noqa: E402

PROBE_METHODS = ("e4e_oracle", "adain_only", "plain_replay")


def probe(nodes, asset: Path, pairs: int) -> dict:
    model = cm.load_model_patcher(asset)
    t, r = B.draw_pairs(pairs, False, 4242)
    settings = B.Settings()
    rows = {}
    with torch.inference_mode():
        target, reference = B.invert(nodes, model, t.images, settings, 1), B.invert(nodes, model, r.images, settings, 2)
        for method in PROBE_METHODS:
            rows[method] = B.summarise(B.metrics(B.transfer(nodes, model, method, target, reference, t, r, settings), t, r))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default=",".join(cm.LAYOUTS))
    parser.add_argument("--steps", type=int, default=3000, help="the schedule's length (as `make creatures`)")
    parser.add_argument("--stop-after", type=int, default=1000, help="steps actually trained")
    parser.add_argument("--reuse", type=Path, nargs="*", default=[], help="already trained assets, one per layout, in order")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / ".e4e" / "probe")
    args = parser.parse_args(argv)
    from comfy_host import load_host_with_pack

    nodes, _ = load_host_with_pack("quality-base")
    table = {}
    for i, layout in enumerate(args.layouts.split(",")):
        asset = args.reuse[i] if i < len(args.reuse) else args.out / f"{layout}.safetensors"
        start = time.perf_counter()
        if i >= len(args.reuse):
            train_creatures.main(["--layout", layout, "--steps", str(args.steps), "--stop-after", str(args.stop_after),
                                  "--out", str(asset), "--log-every", "250"])
        train_s = time.perf_counter() - start
        rows = probe(nodes, asset, args.pairs)
        loss = json.loads(asset.with_suffix(".json").read_text())["final_loss"]
        table[layout] = {"train_seconds": round(train_s), "final_loss": loss, **rows}
        print(f"{layout}: {asset.name}, trained in {train_s:.0f} s, loss {loss:.4f}", flush=True)
        for method, row in rows.items():
            print(f"  {method:13s} part acc {row['part_colour_accuracy']:.3f}  part dE {row['part_delta_e']:5.1f}  "
                  f"sil. IoU {row['silhouette_iou']:.3f}  bg dE {row['background_delta_e']:.1f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probe-results.json").write_text(json.dumps(table, indent=2) + "\n")
    print(f"{'layout':18s} {'loss':>7s} {'oracle acc':>10s} {'adain acc':>9s} {'oracle dE':>9s} {'adain dE':>8s} {'oracle IoU':>10s}")
    for layout, row in table.items():
        o, a = row["e4e_oracle"], row["adain_only"]
        print(f"{layout:18s} {row['final_loss']:7.4f} {o['part_colour_accuracy']:10.3f} {a['part_colour_accuracy']:9.3f} "
              f"{o['part_delta_e']:9.1f} {a['part_delta_e']:8.1f} {o['silhouette_iou']:10.3f}")


if __name__ == "__main__":
    main()
