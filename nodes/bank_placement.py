"""Model-call wrappers of the transfer: one sigma read per model call, features placed per sampling run."""

from __future__ import annotations

from dataclasses import dataclass

import comfy.model_management
import comfy.patcher_extension

from ..core.attention_patch import CALL_KEY, EyeForEyePatch

WRAPPER_KEY = "e4e_transfer"
_TRANSFORMER_OPTIONS = 3  # index of transformer_options in (c_concat, c_crossattn, control, transformer_options)


def fits_on_device(device, nbytes: int, base_model, x_shape) -> bool:
    """True when ComfyUI's memory management leaves room for `nbytes` beside this model call's needs."""
    if comfy.model_management.is_device_cpu(device):
        return False  # the host tensors are read where they are
    free = comfy.model_management.get_free_memory(device)
    reserve = base_model.memory_required(list(x_shape)) + comfy.model_management.minimum_inference_memory()
    return nbytes + reserve <= free


@dataclass
class SamplingRun:
    """OUTER_SAMPLE wrapper: features are placed at the run's first model call and released at its end."""

    patch: EyeForEyePatch

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, *args, **kwargs):
        self.patch.store.release()
        try:
            return executor(*args, **kwargs)
        finally:
            self.patch.store.release()


@dataclass
class ModelCall:
    """APPLY_MODEL wrapper: reads the sigma once and hands every patched layer the step and its features."""

    patch: EyeForEyePatch

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, t, *args, **kwargs):
        store = self.patch.store
        if not store.placed:
            store.place(x.device, fits_on_device(x.device, store.nbytes, executor.class_obj, x.shape))
        state = self.patch.begin_call(float(t.flatten()[0]))
        if len(args) > _TRANSFORMER_OPTIONS:
            args = list(args)
            args[_TRANSFORMER_OPTIONS] = {**args[_TRANSFORMER_OPTIONS], CALL_KEY: state}
        else:
            kwargs["transformer_options"] = {**kwargs.get("transformer_options", {}), CALL_KEY: state}
        out = executor(x, t, *args, **kwargs)
        self.patch.end_call(state)
        return out


def register(model, patch: EyeForEyePatch) -> None:
    """Add the wrappers to a (cloned) ModelPatcher, replacing those of an earlier transfer."""
    unregister(model)
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, SamplingRun(patch))
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY, ModelCall(patch))


def unregister(model) -> None:
    """Remove an earlier transfer's wrappers from a (cloned) ModelPatcher."""
    for kind in (comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, comfy.patcher_extension.WrappersMP.APPLY_MODEL):
        model.remove_wrappers_with_key(kind, WRAPPER_KEY)
