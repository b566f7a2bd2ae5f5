"""Eye-for-an-eye appearance transfer (Go et al., arXiv 2406.07008) as ComfyUI nodes."""

# The page-side defaults ComfyUI loads into its web page: the template order and fresh seed controls.
WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import EyeForEyeExtension

    return EyeForEyeExtension()
