"""The published FlashHead-Lite DiT checkpoint (843 tensors) loads key for key, and bad files are named."""

import math

import pytest
import torch

from rap_core.config import get_preset
from rap_core.errors import CheckpointError
from rap_core.loading.dit_keys import convert_dit_state_dict
from rap_core.loading.strict import load_state_dict_strict
from rap_core.models.dit import build_dit

LITE = get_preset("flashhead-lite")

# Soul-AILab/SoulX-FlashHead-1_3B Model_Lite/diffusion_pytorch_model.safetensors (research/flashhead.md §3.2).
GLOBAL = {
    "patch_embedding.weight": (1536, 256, 1, 1, 1),
    "patch_embedding.bias": (1536,),
    "text_embedding.0.weight": (1536, 4096),
    "text_embedding.0.bias": (1536,),
    "text_embedding.2.weight": (1536, 1536),
    "text_embedding.2.bias": (1536,),
    "time_embedding.0.weight": (1536, 256),
    "time_embedding.0.bias": (1536,),
    "time_embedding.2.weight": (1536, 1536),
    "time_embedding.2.bias": (1536,),
    "time_projection.1.weight": (9216, 1536),
    "time_projection.1.bias": (9216,),
    "head.head.weight": (128, 1536),
    "head.head.bias": (128,),
    "head.modulation": (1, 2, 1536),
    "audio_emb.proj.0.weight": (768,),
    "audio_emb.proj.0.bias": (768,),
    "audio_emb.proj.1.weight": (768, 768),
    "audio_emb.proj.1.bias": (768,),
    "audio_emb.proj.3.weight": (1536, 768),
    "audio_emb.proj.3.bias": (1536,),
    "audio_emb.proj.4.weight": (1536,),
    "audio_emb.proj.4.bias": (1536,),
    "audio_proj.proj1.weight": (512, 46080),
    "audio_proj.proj1.bias": (512,),
    "audio_proj.proj1_vf.weight": (512, 110592),
    "audio_proj.proj1_vf.bias": (512,),
    "audio_proj.proj2.weight": (512, 512),
    "audio_proj.proj2.bias": (512,),
    "audio_proj.proj3.weight": (49152, 512),
    "audio_proj.proj3.bias": (49152,),
    "audio_proj.norm.weight": (1536,),
    "audio_proj.norm.bias": (1536,),
}
PER_BLOCK = {
    **{f"{attn}.{p}.weight": (1536, 1536) for attn in ("self_attn", "cross_attn") for p in "qkvo"},
    **{f"{attn}.{p}.bias": (1536,) for attn in ("self_attn", "cross_attn") for p in "qkvo"},
    **{f"{attn}.{n}.weight": (1536,) for attn in ("self_attn", "cross_attn") for n in ("norm_q", "norm_k")},
    "norm3.weight": (1536,),
    "norm3.bias": (1536,),
    "ffn.0.weight": (8960, 1536),
    "ffn.0.bias": (8960,),
    "ffn.2.weight": (1536, 8960),
    "ffn.2.bias": (1536,),
    "modulation": (1, 6, 1536),
}
MANIFEST = {**GLOBAL, **{f"blocks.{i}.{k}": shape for i in range(30) for k, shape in PER_BLOCK.items()}}
UNUSED = ("text_embedding.", "audio_emb.")


def checkpoint(manifest=MANIFEST, prefix=""):
    return {prefix + k: torch.empty(shape, device="meta") for k, shape in manifest.items()}


def load(state_dict):
    model = build_dit(LITE, device="meta")
    return load_state_dict_strict(model, convert_dit_state_dict(state_dict, LITE), "FlashHead-Lite DiT")


def test_manifest_is_the_published_file():
    assert len(MANIFEST) == 843
    assert sum(math.prod(s) for s in MANIFEST.values()) == 1_526_864_256


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_flashhead_lite_checkpoint_loads_key_for_key(prefix):
    model = load(checkpoint(prefix=prefix))
    dropped = sum(math.prod(s) for k, s in MANIFEST.items() if k.startswith(UNUSED))
    assert dropped == 10_430_208
    assert sum(p.numel() for p in model.parameters()) == 1_526_864_256 - dropped == 1_516_434_048
    assert model.state_dict()["blocks.29.cross_attn.o.weight"].shape == (1536, 1536)


@pytest.mark.parametrize(
    "edit, key",
    [
        (
            lambda sd: sd.update({"blocks.3.cross_attn.k_img.weight": sd["blocks.3.cross_attn.k.weight"]}),
            "blocks.3.cross_attn.k_img.weight",
        ),
        (lambda sd: sd.pop("blocks.7.ffn.2.bias"), "blocks.7.ffn.2.bias"),
        (lambda sd: sd.update({"head.head.weight": torch.empty(64, 1536, device="meta")}), "head.head.weight"),
    ],
    ids=["extra", "missing", "misshaped"],
)
def test_bad_checkpoint_names_the_key(edit, key):
    state_dict = checkpoint()
    edit(state_dict)
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        load(state_dict)


def test_unrecognised_layout_names_keys_and_layouts():
    vae_like = {"encoder.conv_in.conv.weight": torch.empty(128, 48, 3, 3, 3, device="meta")}
    with pytest.raises(CheckpointError, match=r"encoder\.conv_in\.conv\.weight.*diffusers"):
        convert_dit_state_dict(vae_like, LITE)
