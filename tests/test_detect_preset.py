"""The loaders' `auto` preset: a weight file of each known layout is read as its preset, from its
metadata or, without it, from its keys and shapes alone."""

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import load_file, save_file
from test_flashhead_manifest import checkpoint

from rap_core.config import get_preset
from rap_core.errors import CheckpointError
from rap_core.loading.builtin import DEMO_WEIGHTS
from rap_core.loading.detect import detect_preset
from rap_core.loading.random_weights import random_dit, random_vae
from rap_core.models import build_dit, build_vae

LITE = get_preset("flashhead-lite")


def diffusers_lite() -> dict[str, torch.Tensor]:
    """FlashHead-Lite's DiT in diffusers' WanTransformer3DModel layout (and our audio projection), on the meta
    device."""
    with torch.device("meta"):
        wan = WanTransformer3DModel(
            patch_size=(1, 1, 1),
            num_attention_heads=12,
            attention_head_dim=128,
            in_channels=256,
            out_channels=128,
            text_dim=1536,
            freq_dim=256,
            ffn_dim=8960,
            num_layers=30,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
        )
    ours = build_dit(LITE, device="meta").state_dict()
    return dict(wan.state_dict()) | {k: v for k, v in ours.items() if k.startswith("audio_proj.")}


@pytest.mark.parametrize("layout", ["flashhead", "diffusers", "ours"])
def test_a_flashhead_lite_dit_is_read_as_flashhead_lite_in_every_layout(layout):
    state = {
        "flashhead": lambda: checkpoint(),
        "diffusers": diffusers_lite,
        "ours": lambda: build_dit(LITE, device="meta").state_dict(),
    }[layout]()
    assert detect_preset(state, "dit") == "flashhead-lite"


def test_the_demo_files_are_read_as_demo_with_or_without_their_metadata(tmp_path):
    for name, kind in (("dit.safetensors", "dit"), ("vae.safetensors", "vae")):
        assert detect_preset(DEMO_WEIGHTS / name, kind) == "demo"  # metadata
        save_file(load_file(DEMO_WEIGHTS / name), tmp_path / name)  # the same tensors, no metadata
        assert detect_preset(tmp_path / name, kind) == "demo"


def test_tiny_networks_and_the_lite_vae_are_read_by_shape(tmp_path):
    tiny = get_preset("tiny")
    save_file(random_dit(tiny).state_dict(), tmp_path / "dit.safetensors")
    save_file(random_vae(tiny).state_dict(), tmp_path / "vae.safetensors")
    assert detect_preset(tmp_path / "dit.safetensors", "dit") == "tiny"
    assert detect_preset(tmp_path / "vae.safetensors", "vae") == "tiny"
    assert detect_preset(build_vae(LITE, device="meta").state_dict(), "vae") == "flashhead-lite"


def test_metadata_names_what_shapes_cannot_and_a_foreign_file_is_explained(tmp_path):
    tiny_dit = random_dit(get_preset("tiny")).state_dict()
    save_file(tiny_dit, tmp_path / "rap.safetensors", metadata={"preset": "rap-1.3b"})
    assert detect_preset(tmp_path / "rap.safetensors", "dit") == "rap-1.3b"  # the metadata wins over the shapes
    with pytest.raises(CheckpointError, match="fit none of the presets' networks.*choose the preset by hand"):
        detect_preset(tiny_dit, "vae")
