"""Demo-only ComfyUI nodes for the creature model: load it, and move images in and out of its latent.

Kept apart from the user pack: ComfyUI loads these only when quality/ itself is linked into
custom_nodes (the demo and the tests do that); a user who clones the pack never sees them.
The creature model has no VAE and no text encoder: its latent is the image, space-to-depth'ed,
and its conditioning is an all-zeros context.
"""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import creature_model as cm

CATEGORY = "Eye-for-an-eye/demo (creature model)"


class LoadCreatureModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="E4EDemo_LoadCreatureModel",
            display_name="Load Creature Model (demo)",
            category=CATEGORY,
            description="The tiny creature diffusion model trained by quality/train_creatures.py (tests/assets).",
            inputs=[],
            outputs=[
                io.Model.Output("model", tooltip="The creature UNet (unconditional, eps prediction, 64x64 images)."),
                io.Conditioning.Output("conditioning", tooltip="The empty context the model was trained with: use it as positive and negative."),
            ],
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:
        return io.NodeOutput(cm.load_model_patcher(), cm.empty_conditioning())


class CreatureImageToLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="E4EDemo_CreatureImageToLatent",
            display_name="Creature Image to Latent (demo)",
            category=CATEGORY,
            description="The creature model's 'VAE encode': a lossless space-to-depth of a 64x64 image.",
            inputs=[io.Image.Input("image", tooltip="64x64 RGB image(s).")],
            outputs=[io.Latent.Output("latent", tooltip="[B, 48, 16, 16] latent.")],
        )

    @classmethod
    def execute(cls, image) -> io.NodeOutput:
        if tuple(image.shape[1:3]) != (cm.IMAGE_SIZE, cm.IMAGE_SIZE):
            raise ValueError(f"image: the creature model takes {cm.IMAGE_SIZE}x{cm.IMAGE_SIZE} images, got "
                             f"{image.shape[2]}x{image.shape[1]}; resize it first")
        return io.NodeOutput({"samples": cm.encode(image[..., :3].movedim(-1, 1).float())})


class CreatureLatentToImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="E4EDemo_CreatureLatentToImage",
            display_name="Creature Latent to Image (demo)",
            category=CATEGORY,
            description="The creature model's 'VAE decode': the exact inverse of Creature Image to Latent.",
            inputs=[io.Latent.Input("latent", tooltip="A creature-model latent.")],
            outputs=[io.Image.Output("image", tooltip="64x64 RGB image(s), clamped to 0..1.")],
        )

    @classmethod
    def execute(cls, latent) -> io.NodeOutput:
        return io.NodeOutput(cm.decode_images(latent["samples"].float()).movedim(1, -1))


class CreatureDemoExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [LoadCreatureModel, CreatureImageToLatent, CreatureLatentToImage]
