"""Eye-for-an-eye appearance transfer (Go et al., arXiv 2406.07008) as ComfyUI nodes."""


async def comfy_entrypoint():
    from .nodes import EyeForEyeExtension

    return EyeForEyeExtension()
