"""RAP networks under ComfyUI's model manager: built on the offload device, wrapped in a
ModelPatcher, and moved to the compute device by `load_models_gpu` only while a node uses them."""

from __future__ import annotations

import comfy.model_management as mm
import comfy.model_patcher
import torch

from ..rap_core.config import RAPConfig
from .types import Network

WEIGHT_DTYPES = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def pick_dtype(choice: str) -> torch.dtype:
    """The weights' dtype (also the compute dtype): the user's choice, or what ComfyUI prefers for
    a diffusion model on this device (bf16 where supported, float32 on a CPU)."""
    chosen = WEIGHT_DTYPES[choice]
    if chosen is not None:
        return chosen
    return mm.unet_dtype(supported_dtypes=[torch.bfloat16, torch.float16, torch.float32])


def offload_device() -> torch.device:
    return mm.unet_offload_device()


def wrap(model: torch.nn.Module, config: RAPConfig, dtype: torch.dtype) -> Network:
    """`model` under the patcher ComfyUI gives its own models: ModelPatcherDynamic under dynamic VRAM
    (0.33 and later on NVIDIA GPUs; main.py sets CoreModelPatcher at startup), else ModelPatcher
    (0.3.75 has only that)."""
    patcher_class = getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)
    patcher = patcher_class(model, load_device=mm.get_torch_device(), offload_device=offload_device())
    return Network(patcher, config, dtype)


def load(*networks: Network, memory_required: int = 0) -> None:
    """Have ComfyUI place `networks` on their compute device (evicting others if it must)."""
    mm.load_models_gpu([network.patcher for network in networks], memory_required=memory_required)
