"""FantasyTalking audio-weight key conversion: either published layout -> ours.

- The official `fantasytalking_model.ckpt` (acvlab/FantasyTalking) pickles two dicts,
  {"proj_model": {proj.weight, norm.weight, norm.bias}, "audio_processor":
  {blocks.{i}.cross_attn.processor.{k,v}_proj.weight}}; `read_state_dict` flattens them to
  `proj_model.*` and `audio_processor.blocks.*`, the keys of the release's flat .safetensors too.
- Kijai's `fantasytalking_fp16.safetensors` (Kijai/WanVideo_comfy): `proj_model.*` and
  `blocks.{i}.cross_attn.{k,v}_proj.weight`.

Ours (rap_core.models.fantasytalking): proj.weight, norm.{weight,bias}, blocks.{i}.{k,v}_proj.weight.
Keys are only renamed here; completeness and shapes are checked when the dict is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..errors import CheckpointError
from .strict import listing

_LAYOUT = (
    (re.compile(r"proj_model\.((?:proj|norm)\.(?:weight|bias))"), r"\1"),
    (
        re.compile(r"(?:audio_processor\.)?blocks\.(\d+)\.cross_attn\.(?:processor\.)?([kv]_proj\.weight)"),
        r"blocks.\1.\2",
    ),
)


def convert_fantasytalking_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A FantasyTalking state dict in a published layout -> our keys; unknown keys are an error naming them."""
    converted, unknown = {}, []
    for key, value in state.items():
        for pattern, ours in _LAYOUT:
            if pattern.fullmatch(key):
                converted[pattern.sub(ours, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"Not FantasyTalking audio weights: unexpected keys {listing(sorted(unknown))}. Expected the official "
            "fantasytalking_model.ckpt (proj_model.*, audio_processor.blocks.N.cross_attn.processor.k_proj/v_proj) "
            "or Kijai's fantasytalking_fp16.safetensors (proj_model.*, blocks.N.cross_attn.k_proj/v_proj)."
        )
    return converted
