"""E4E_VisualizeCorrespondence: match lines, the warped reference and a confidence map of a correspondence."""

from __future__ import annotations

import torch

from ..core.visualize import confidence_heatmap, match_lines, warp_reference
from .api import CATEGORY, Correspondence, io, ui
from .validation import check_framing, verdict, widget_problems


def _check_batch(name: str, image: torch.Tensor, batch: int, made_for=None, cell: int = 8) -> None:
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"{name}: expected an IMAGE [batch, height, width, 3], got shape {tuple(image.shape)}")
    if image.shape[0] not in (1, batch):
        raise ValueError(f"{name} has a batch of {image.shape[0]} but the correspondence has {batch}: use 1 image or {batch}")
    if made_for is not None:
        check_framing(name, "image", tuple(image.shape[1:3]), made_for, "the image the correspondence was computed for", cell)


class VisualizeCorrespondence(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="E4E_VisualizeCorrespondence",
            display_name="Visualize Correspondence (Eye-for-an-eye)",
            category=CATEGORY,
            description=(
                "Shows what a correspondence does: lines from a sparse grid of target tokens to the reference tokens "
                "they take their appearance from, the reference warped into the target's layout (tokens that are not "
                "transferred in dimmed grey), and the similarity of each match as a heat map (black: not transferred)."
            ),
            inputs=[
                Correspondence.Input("correspondence", tooltip="From Semantic Match: which reference token each target token takes."),
                io.Image.Input("target_image", tooltip="The structure image the correspondence was computed for (1 or the correspondence's batch)."),
                io.Image.Input("reference_image", tooltip="The appearance image (1 or the correspondence's batch)."),
                io.Int.Input("points_per_side", default=8, min=2, max=64, tooltip="Match lines are drawn for a points_per_side x points_per_side grid of target tokens (valid ones only)."),
            ],
            outputs=[
                io.Image.Output("matches", display_name="matches", tooltip="Target | reference side by side with coloured match lines."),
                io.Image.Output("warped_reference", display_name="warped_reference", tooltip="The reference rearranged into the target's layout; grey where nothing is transferred."),
                io.Image.Output("confidence", display_name="confidence", tooltip="Match similarity per target token (viridis: 0 dark, 1 bright); black where nothing is transferred."),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, points_per_side=None):
        return verdict(widget_problems(cls, points_per_side=points_per_side))

    @classmethod
    def execute(cls, correspondence, target_image, reference_image, points_per_side=8) -> io.NodeOutput:
        batch = correspondence.index.shape[0]
        _check_batch("target_image", target_image, batch, correspondence.target_image_size)
        _check_batch("reference_image", reference_image, batch, correspondence.reference_image_size)
        size = tuple(target_image.shape[1:3])
        matches = match_lines(target_image, reference_image, correspondence, points_per_side)
        warped = warp_reference(reference_image, correspondence, size)
        confidence = confidence_heatmap(correspondence, size)
        # The three differ in width, so the preview shows the match lines (the other two are outputs).
        return io.NodeOutput(matches, warped, confidence, ui=ui.PreviewImage(matches, cls=cls))
