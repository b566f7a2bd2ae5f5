"""The node layer: turns ComfyUI objects into core calls."""

from .api import ComfyExtension, io
from .apply import ApplyEyeForEye, ApplyEyeForEyeObjects
from .attention_masks import AttentionMasks
from .features import ExtractFeatures, SemanticMatch
from .freeu import FreeUPublished
from .invert import Invert
from .objects import TransferObjectNode
from .sampling import ReplayPieces, TransferKSampler
from .visualize import VisualizeCorrespondence

NODES = [
    Invert,
    ApplyEyeForEye,
    TransferKSampler,
    ReplayPieces,
    ExtractFeatures,
    SemanticMatch,
    TransferObjectNode,
    ApplyEyeForEyeObjects,
    VisualizeCorrespondence,
    FreeUPublished,
    AttentionMasks,
]


class EyeForEyeExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
