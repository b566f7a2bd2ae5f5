"""The one place the pack imports ComfyUI's node API; custom socket types live here too."""

from comfy_api.latest import ComfyExtension, io, ui  # noqa: F401

CATEGORY = "Eye-for-an-eye"

Inversion = io.Custom("E4E_INVERSION")
Features = io.Custom("E4E_FEATURES")
Correspondence = io.Custom("E4E_CORRESPONDENCE")
Objects = io.Custom("E4E_OBJECTS")
