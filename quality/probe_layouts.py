"""Which UNet layout lets the rearrangement move colour? A quick probe of creature-model layouts.

For each candidate layout in quality.creature_model.LAYOUTS: train briefly with the shipped recipe
(quality/train_creatures.py, same seed), then run the part-transfer benchmark's ground-truth
correspondence oracle (perfect matching, so only the injection is tested) against AdaIN only and
plain replay on a few same-orientation pairs. The layout whose oracle beats AdaIN only by the most
is the one where rearranging the decoder's self-attention carries colour.

    python quality/probe_layouts.py --steps 400 --pairs 16     # about 7 minutes a layout here
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
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / ".e4e" / "probe")
    args = parser.parse_args(argv)
    from comfy_host import load_host_with_pack

    nodes, _ = load_host_with_pack("quality-base")
    table = {}
    for layout in args.layouts.split(","):
        asset = args.out / f"{layout}.safetensors"
        start = time.perf_counter()
        train_creatures.main(["--layout", layout, "--steps", str(args.steps), "--warmup", str(min(200, args.steps // 4)),
                              "--out", str(asset), "--log-every", str(max(1, args.steps // 4))])
        train_s = time.perf_counter() - start
        rows = probe(nodes, asset, args.pairs)
        loss = json.loads(asset.with_suffix(".json").read_text())["final_loss"]
        table[layout] = {"train_seconds": round(train_s), "final_loss": loss, **rows}
        print(f"{layout}: trained {args.steps} steps in {train_s:.0f} s, loss {loss:.4f}", flush=True)
        for method, row in rows.items():
            print(f"  {method:13s} part acc {row['part_colour_accuracy']:.3f}  part dE {row['part_delta_e']:5.1f}  "
                  f"sil. IoU {row['silhouette_iou']:.3f}  bg dE {row['background_delta_e']:.1f}", flush=True)
    (args.out / "probe-results.json").write_text(json.dumps(table, indent=2) + "\n")
    print(f"{'layout':18s} {'loss':>7s} {'oracle acc':>10s} {'adain acc':>9s} {'oracle dE':>9s} {'adain dE':>8s} {'oracle IoU':>10s}")
    for layout, row in table.items():
        o, a = row["e4e_oracle"], row["adain_only"]
        print(f"{layout:18s} {row['final_loss']:7.4f} {o['part_colour_accuracy']:10.3f} {a['part_colour_accuracy']:9.3f} "
              f"{o['part_delta_e']:9.1f} {a['part_delta_e']:8.1f} {o['silhouette_iou']:10.3f}")


if __name__ == "__main__":
    main()
