"""The node layer: turns ComfyUI objects into core calls."""

from .api import ComfyExtension, io
from .apply import ApplyEyeForEye
from .invert import Invert
from .sampling import ReplayPieces, TransferKSampler

NODES = [Invert, ApplyEyeForEye, TransferKSampler, ReplayPieces]


class EyeForEyeExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
