"""DiT checkpoint key conversion: FlashHead/Wan original, diffusers `WanTransformer3DModel`, or ours.

Our layout is FlashHead-Lite's minus its unused `text_embedding.*` (Wan's T5 path) and
`audio_emb.*`. Keys are only renamed or dropped here; completeness and shapes are checked by
`loading.strict` when the dict is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..config import RAPConfig
from ..errors import CheckpointError
from .strict import listing

# Checkpoint wrappers stripped when every key carries them (ComfyUI, Lightning, DDP, pipelines).
_WRAPPER_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "transformer.", "model.", "module.")
_ORIGINAL_UNUSED = ("text_embedding.", "audio_emb.")
_DIFFUSERS_UNUSED = ("condition_embedder.text_embedder.",)

# diffusers name -> ours, matched as prefixes; block keys are matched after "blocks.N.".
_DIFFUSERS_TOP = {
    "condition_embedder.time_embedder.linear_1.": "time_embedding.0.",
    "condition_embedder.time_embedder.linear_2.": "time_embedding.2.",
    "condition_embedder.time_proj.": "time_projection.1.",
    "proj_out.": "head.head.",
    "scale_shift_table": "head.modulation",
}
_DIFFUSERS_BLOCK = {
    "attn1.to_q.": "self_attn.q.",
    "attn1.to_k.": "self_attn.k.",
    "attn1.to_v.": "self_attn.v.",
    "attn1.to_out.0.": "self_attn.o.",
    "attn1.norm_q.": "self_attn.norm_q.",
    "attn1.norm_k.": "self_attn.norm_k.",
    "attn2.to_q.": "cross_attn.q.",
    "attn2.to_k.": "cross_attn.k.",
    "attn2.to_v.": "cross_attn.v.",
    "attn2.to_out.0.": "cross_attn.o.",
    "attn2.norm_q.": "cross_attn.norm_q.",
    "attn2.norm_k.": "cross_attn.norm_k.",
    "norm2.": "norm3.",  # diffusers' affine cross-attention norm is Wan's norm3
    "ffn.net.0.proj.": "ffn.0.",
    "ffn.net.2.": "ffn.2.",
    "scale_shift_table": "modulation",
}
_BLOCK = re.compile(r"(blocks\.\d+\.)(.*)")


def _rename(key: str, table: Mapping[str, str]) -> str:
    for old, new in table.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def _from_diffusers(key: str) -> str:
    block = _BLOCK.fullmatch(key)
    if block:
        return block.group(1) + _rename(block.group(2), _DIFFUSERS_BLOCK)
    return _rename(key, _DIFFUSERS_TOP)


def _strip_wrapper(keys: list[str]) -> str:
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in keys):
            return prefix
    return ""


def convert_dit_state_dict(state_dict: Mapping[str, torch.Tensor], config: RAPConfig) -> dict[str, torch.Tensor]:
    """Return `state_dict` (FlashHead/Wan original, diffusers, or our own keys) in our DiT layout.

    Unknown keys are passed through unchanged so the strict load names them.
    """
    keys = list(state_dict)
    if not keys:
        raise CheckpointError(
            f"The DiT checkpoint for preset '{config.name}' holds no tensors; the file is empty or not a DiT."
        )
    prefix = _strip_wrapper(keys)
    tensors = {k[len(prefix) :]: v for k, v in state_dict.items()}
    if any(k.startswith("condition_embedder.") or re.match(r"blocks\.\d+\.attn1\.", k) for k in tensors):
        return {_from_diffusers(k): v for k, v in tensors.items() if not k.startswith(_DIFFUSERS_UNUSED)}
    if any(k.startswith("time_embedding.") or re.match(r"blocks\.\d+\.self_attn\.", k) for k in tensors):
        return {k: v for k, v in tensors.items() if not k.startswith(_ORIGINAL_UNUSED)}
    raise CheckpointError(
        f"Unrecognised DiT checkpoint layout for preset '{config.name}' (keys seen: {listing(keys)}). "
        "Accepted layouts: "
        "FlashHead/Wan original (e.g. 'blocks.0.self_attn.q.weight', 'time_embedding.0.weight'), diffusers "
        "WanTransformer3DModel (e.g. 'blocks.0.attn1.to_q.weight', 'condition_embedder.time_proj.weight'), "
        "or this package's own layout. Check that the file is a FlashHead/Wan DiT and not a VAE or audio encoder."
    )
