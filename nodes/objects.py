"""E4E_TransferObject: one (reference, target region, reference region) pair; chain several for multi-object transfer."""

from __future__ import annotations

from ..core.attention_patch import TransferObject
from ..core.masks import as_mask_batch
from .api import CATEGORY, Correspondence, Inversion as InversionType, Objects, io


def transfer_object(reference, target_mask=None, reference_mask=None, correspondence=None) -> TransferObject:
    return TransferObject(
        reference=reference,
        target_mask=None if target_mask is None else as_mask_batch(target_mask, "target_mask"),
        reference_mask=None if reference_mask is None else as_mask_batch(reference_mask, "reference_mask"),
        correspondence=correspondence,
    )


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
                Correspondence.Input("correspondence", optional=True, tooltip="Use this fixed correspondence instead of per-step matching."),
                Objects.Input("objects", optional=True, tooltip="Objects defined so far (chain the nodes)."),
            ],
            outputs=[Objects.Output("objects_out", display_name="objects", tooltip="The objects so far plus this one: chain into the next Transfer Object, Apply (multi-object) and the KSampler.")],
        )

    @classmethod
    def execute(cls, reference_inversion, target_mask, reference_mask, correspondence=None, objects=None) -> io.NodeOutput:
        new = transfer_object(reference_inversion, target_mask, reference_mask, correspondence)
        return io.NodeOutput(tuple(objects or ()) + (new,))
