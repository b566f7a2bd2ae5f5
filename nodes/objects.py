"""E4E_TransferObject: one (reference, target region, reference region) pair; chain several for multi-object transfer."""

from __future__ import annotations

from typing import Optional

from ..core.attention_patch import TransferObject
from ..core.inversion import Inversion
from .api import CATEGORY, Correspondence, Inversion as InversionType, Objects, io
from .validation import check_correspondence_for, check_mask_fits, fitting_mask


def object_label(k: int, count: int) -> str:
    """How messages name object k's inputs: "" for a single object, else "objects: Transfer Object #k's "."""
    return "" if count == 1 else f"objects: Transfer Object #{k + 1}'s "


def transfer_object(reference: Inversion, target_mask=None, reference_mask=None, correspondence=None, target: Optional[Inversion] = None) -> TransferObject:
    """Checks the masks and the correspondence against the reference (and the target, when known) first."""
    obj = TransferObject(
        reference=reference,
        target_mask=None if target_mask is None else fitting_mask(
            target_mask, "target_mask", None if target is None else target.image_size, None if target is None else target.batch,
            "target_inversion's image", reference.image_downscale),
        reference_mask=None if reference_mask is None else fitting_mask(
            reference_mask, "reference_mask", reference.image_size, reference.batch, "reference_inversion's image", reference.image_downscale),
        correspondence=correspondence,
    )
    if correspondence is not None:
        check_correspondence_for(correspondence, reference, "reference", "reference_inversion")
    if target is not None:
        check_object_fits(obj, target)
    return obj


def check_object_fits(obj: TransferObject, target: Inversion, label: str = "") -> None:
    """The parts of an object that belong to the target: its target mask and its correspondence."""
    if obj.target_mask is not None:
        check_mask_fits(obj.target_mask, f"{label}target_mask", target.image_size, target.batch, "target_inversion's image", target.image_downscale)
    if obj.correspondence is not None:
        check_correspondence_for(obj.correspondence, target, "target", "target_inversion", f"{label}correspondence")


class TransferObjectNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="E4E_TransferObject",
            display_name="Transfer Object (Eye-for-an-eye)",
            category=CATEGORY,
            description=(
                "One object of a multi-object transfer: the target region takes its appearance from this reference's "
                "region only. Chain several through 'objects'; where target masks overlap, the later object wins. "
                "Target tokens outside every target mask keep their own appearance."
            ),
            inputs=[
                InversionType.Input("reference_inversion", tooltip="Where this object's appearance comes from."),
                io.Mask.Input("target_mask", tooltip="The object in the target."),
                io.Mask.Input("reference_mask", tooltip="The matching object in the reference."),
                Correspondence.Input("correspondence", optional=True, tooltip="Use this fixed correspondence instead of per-step matching. It must be computed from the latents that were inverted (its token grids may differ from the transfer's: it is resampled; its features may come from another model)."),
                Objects.Input("objects", optional=True, tooltip="Objects defined so far (chain the nodes)."),
            ],
            outputs=[Objects.Output("objects_out", display_name="objects", tooltip="The objects so far plus this one: chain into the next Transfer Object, Apply (multi-object) and the KSampler.")],
        )

    @classmethod
    def execute(cls, reference_inversion, target_mask, reference_mask, correspondence=None, objects=None) -> io.NodeOutput:
        new = transfer_object(reference_inversion, target_mask, reference_mask, correspondence)
        return io.NodeOutput(tuple(objects or ()) + (new,))
