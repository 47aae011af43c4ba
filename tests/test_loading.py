"""Weight files -> networks: FlashHead-layout DiT and VAE files load strictly, in the asked dtype."""

import pytest
import torch
from safetensors.torch import save_file

from rap_core import RAPInputError, RAPPipeline
from rap_core.config import get_preset
from rap_core.errors import CheckpointError
from rap_core.loading import load_dit, load_vae
from rap_core.loading.builtin import builtin_dit, builtin_vae, load_audio_encoder
from rap_core.models import build_dit, build_vae
from rap_core.models.mel import MelEncoder

CONFIG = get_preset("tiny")


def dit_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    c, d, m = CONFIG.vae.latent_channels, CONFIG.dit.dim, CONFIG.audio.context_tokens
    x, ref = torch.randn(2, 1, c, 3, 2, 2, generator=g)
    return x, ref, torch.tensor([900.0]), torch.randn(1, 3, m, d, generator=g)


def test_flashhead_layout_file_loads_with_unused_tensors_dropped(tmp_path):
    torch.manual_seed(1)
    source = build_dit(CONFIG).eval()
    state = dict(source.state_dict())
    state["text_embedding.0.weight"] = torch.zeros(CONFIG.dit.dim, 64)  # unused in FlashHead's file too
    state["audio_emb.proj.0.weight"] = torch.zeros(16)
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    loaded = load_dit(path, CONFIG)
    with torch.no_grad():
        assert torch.equal(loaded(*dit_inputs()), source(*dit_inputs()))
    half = load_dit(path, CONFIG, dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert not any(t.is_meta for t in half.state_dict().values())


def test_dit_file_with_a_foreign_key_names_the_file_and_key(tmp_path):
    state = {k: v.contiguous() for k, v in build_dit(CONFIG).state_dict().items()}
    state["blocks.0.cross_attn.k_img.weight"] = torch.zeros(4, 4)
    path = tmp_path / "other_model.safetensors"
    save_file(state, path)
    with pytest.raises(CheckpointError, match=r"other_model\.safetensors.*k_img"):
        load_dit(path, CONFIG)


def test_vae_file_round_trips(tmp_path):
    torch.manual_seed(2)
    source = build_vae(CONFIG).eval()
    path = tmp_path / "vae.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, path)
    loaded = load_vae(path, CONFIG)
    latents = torch.randn(1, CONFIG.vae.latent_channels, 2, 2, 2)
    with torch.no_grad():
        assert torch.equal(loaded.decode(latents), source.decode(latents))


def test_presets_with_weights_say_which_files_they_need():
    with pytest.raises(RAPInputError, match="dit, vae, audio_encoder"):
        RAPPipeline.from_preset("flashhead-lite")


def test_presets_without_built_in_weights_are_refused_by_name():
    flashhead = get_preset("flashhead-lite")
    for build in (builtin_dit, builtin_vae, load_audio_encoder):
        with pytest.raises(RAPInputError, match="only tiny and demo have"):
            build(flashhead)
    with pytest.raises(RAPInputError, match="has no weights"):
        load_audio_encoder(get_preset("demo"), "models/rap/wav2vec2-base-960h")
    assert isinstance(load_audio_encoder(get_preset("demo")), MelEncoder)  # weight-free: always built in
