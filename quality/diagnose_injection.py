"""Which step of the method limits part transfer on the creature model? A quick diagnostic (about 3 minutes).

Runs the ground-truth-correspondence oracle and per-step matching on 12 same-orientation pairs under
the scaled published schedule and under stronger variants (window from step 0 without refresh, doubled
guidance, half the skip). If even the oracle stays low, the rearranged features do not reach the output.

    python quality/diagnose_injection.py
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from quality import benchmark as B  # noqa: E402
from quality import creature_model as cm  # noqa: E402


def main() -> None:
    from comfy_host import load_host_with_pack

    nodes, _ = load_host_with_pack("quality-base")
    model = cm.load_model_patcher()
    t, r = B.draw_pairs(12, False, 4242)
    base = B.Settings()
    variants = [
        ("published-scaled", base),
        ("start0-norefresh", dataclasses.replace(base, start=0, refresh_every=0)),
        ("start0-norefresh-cfg5", dataclasses.replace(base, start=0, refresh_every=0, cfg=5.0)),
        ("skip8-start0-norefresh", dataclasses.replace(base, skip=8, start=0, refresh_every=0, adain_start=29)),
    ]
    with torch.inference_mode():
        for name, s in variants:
            target, reference = B.invert(nodes, model, t.images, s, 1), B.invert(nodes, model, r.images, s, 2)
            for method in ("e4e_oracle", "e4e_per_step"):
                out = B.summarise(B.metrics(B.transfer(nodes, model, method, target, reference, t, r, s), t, r))
                print(f"{name:24s} {method:14s} acc {out['part_colour_accuracy']:.3f} "
                      f"dE {out['part_delta_e']:.1f} iou {out['silhouette_iou']:.3f}", flush=True)


if __name__ == "__main__":
    main()
