"""The creature model, its benchmark and demo nodes. As a ComfyUI pack (linked into custom_nodes by the
demo and the tests, never by users) it registers the demo nodes of quality/comfy_nodes.py."""


async def comfy_entrypoint():
    from .comfy_nodes import CreatureDemoExtension

    return CreatureDemoExtension()
