"""The DiT: parity with diffusers' Wan transformer, window/full/hybrid audio attention, dtypes, batching."""

from dataclasses import replace

import pytest
import torch
from diffusers import WanTransformer3DModel
from torch import nn

from rap_core.config import get_preset
from rap_core.errors import CheckpointError, RAPInputError
from rap_core.loading.dit_keys import convert_dit_state_dict
from rap_core.loading.models import load_dit
from rap_core.loading.strict import load_state_dict_strict
from rap_core.models.attention import AudioAttention, resolve_attention, sdpa_attention
from rap_core.models.dit import build_dit

TINY = get_preset("tiny")
C = TINY.vae.latent_channels
M = TINY.audio.context_tokens


def tiny(**dit_changes):
    return TINY.replace(dit=replace(TINY.dit, **dit_changes))


@torch.no_grad()
def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter (modulation tables and norm weights included) with random values."""
    generator = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        scale = p[0].numel() ** -0.5 if p.ndim > 1 and p.shape[0] > 1 else 0.5
        p.copy_(torch.randn(p.shape, generator=generator) * scale)
    return module


def inputs(batch=2, frames=3, size=4, dim=TINY.dit.dim, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, C, frames, size, size, generator=g)
    ref = torch.randn(batch, C, frames, size, size, generator=g)
    audio = torch.randn(batch, frames, M, dim, generator=g)
    timestep = torch.tensor([937.5, 250.0, 625.0, 1000.0][:batch])
    return x, ref, timestep, audio


def same_weights(config, source, **kwargs):
    model = build_dit(config, **kwargs)
    return load_state_dict_strict(model, source.state_dict(), "DiT")


@pytest.mark.parametrize("patch_size", [(1, 1, 1), (1, 2, 2)])
@torch.no_grad()
def test_full_mode_matches_diffusers_wan(patch_size):
    config = tiny(dim=64, num_heads=2, ffn_dim=96, freq_dim=32, patch_size=patch_size, audio_mode="full")
    reference = WanTransformer3DModel(
        patch_size=patch_size,
        num_attention_heads=2,
        attention_head_dim=32,
        in_channels=2 * C,
        out_channels=C,
        text_dim=64,
        freq_dim=32,
        ffn_dim=96,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
    ).eval()
    reference.condition_embedder.text_embedder = nn.Identity()  # audio tokens go straight to attn2
    randomize(reference)
    ours = build_dit(config).eval()
    state = dict(reference.state_dict())
    state.update({k: v for k, v in randomize(ours, seed=5).state_dict().items() if k.startswith("audio_proj.")})
    load_state_dict_strict(ours, convert_dit_state_dict(state, config), "DiT")

    x, ref, timestep, audio = inputs(dim=64)
    expected = reference(torch.cat([x, ref], dim=1), timestep, audio.flatten(1, 2), return_dict=False)[
        0
    ]  # audio [B, F*M, D]
    got = ours(x, ref, timestep, audio)
    assert got.shape == x.shape
    assert expected.abs().max() > 0.1
    assert (got - expected).abs().max() < 1e-4


@torch.no_grad()
def test_window_attention_is_full_attention_per_frame():
    torch.manual_seed(0)
    attention = randomize(AudioAttention(32, 2, 1e-6, sdpa_attention, alpha=1.0))
    frames, tokens_per_frame = 3, 5
    x = torch.randn(2, frames * tokens_per_frame, 32)
    audio = torch.randn(2, frames, M, 32)
    window = attention(x, audio)
    attention.alpha = 0.0
    per_frame = torch.cat(
        [
            attention(x[:, f * tokens_per_frame : (f + 1) * tokens_per_frame], audio[:, f : f + 1])
            for f in range(frames)
        ],
        dim=1,
    )
    full = attention(x, audio)
    assert (window - per_frame).abs().max() < 1e-5
    assert (window - full).abs().max() > 1e-2


@torch.no_grad()
def test_window_mode_keeps_each_frame_to_its_own_audio():
    # One block: self-attention sees no audio, so a frame's output can depend on other frames'
    # audio only through the audio attention.
    torch.manual_seed(0)
    window = randomize(build_dit(tiny(num_layers=1, audio_mode="window")))
    full = same_weights(tiny(num_layers=1, audio_mode="full"), window)
    x, ref, timestep, audio = inputs()
    changed = audio.clone()
    changed[:, 1:] = torch.randn_like(changed[:, 1:])
    for model, frame0_moves in ((window, False), (full, True)):
        delta = (model(x, ref, timestep, audio) - model(x, ref, timestep, changed))[:, :, 0].abs().max()
        assert (delta > 1e-3) == frame0_moves


@torch.no_grad()
def test_hybrid_alpha_extremes_equal_window_and_full():
    base = randomize(build_dit(tiny(audio_mode="window")))
    full = same_weights(tiny(audio_mode="full"), base)
    as_window = same_weights(tiny(audio_mode="hybrid", alpha_w=0.0, alpha_delta=1.0), base)
    as_full = same_weights(tiny(audio_mode="hybrid", alpha_w=0.0, alpha_delta=0.0), base)
    mid = same_weights(tiny(audio_mode="hybrid", alpha_w=0.0, alpha_delta=0.5), base)
    args = inputs()
    out_window, out_full, out_mid = base(*args), full(*args), mid(*args)
    assert torch.equal(as_window(*args), out_window)
    assert torch.equal(as_full(*args), out_full)
    assert (out_mid - out_window).abs().max() > 1e-2
    assert (out_mid - out_full).abs().max() > 1e-2


@torch.no_grad()
def test_hybrid_blends_window_and_full_outputs():
    attention = randomize(AudioAttention(32, 2, 1e-6, sdpa_attention))
    x, audio = torch.randn(2, 3 * 5, 32), torch.randn(2, 3, M, 32)
    outputs = {}
    for alpha in (1.0, 0.0, 0.3):
        attention.alpha = alpha
        outputs[alpha] = attention(x, audio)
    assert (outputs[0.3] - (0.3 * outputs[1.0] + 0.7 * outputs[0.0])).abs().max() < 1e-5


def test_alpha_ramps_from_full_to_window_over_depth():
    model = build_dit(tiny(num_layers=4, audio_mode="hybrid", alpha_w=1.0, alpha_delta=0.0), device="meta")
    assert [b.cross_attn.alpha for b in model.blocks] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    model.set_audio_mode("hybrid", alpha_w=2.0, alpha_delta=-0.5)
    assert [b.cross_attn.alpha for b in model.blocks] == pytest.approx([0.0, 1 / 6, 5 / 6, 1.0])
    model.set_audio_mode("window")
    assert [b.cross_attn.alpha for b in model.blocks] == [1.0] * 4
    single = build_dit(tiny(num_layers=1, audio_mode="hybrid", alpha_w=1.0, alpha_delta=0.25), device="meta")
    assert single.blocks[0].cross_attn.alpha == 0.25
    with pytest.raises(RAPInputError, match="window, full, hybrid"):
        model.set_audio_mode("windowed")


@torch.no_grad()
def test_runs_in_bfloat16_float16_and_float32():
    reference = randomize(build_dit(TINY), seed=3)
    x, ref, _, audio = inputs()
    timestep = torch.tensor([1000.0, 624.0])  # exact in bfloat16 (see the next test)
    expected = reference(x, ref, timestep, audio)
    for dtype, tolerance in ((torch.bfloat16, 0.05), (torch.float16, 0.01)):
        model = same_weights(TINY, reference, dtype=dtype)
        out = model(x.to(dtype), ref.to(dtype), timestep, audio.to(dtype))
        assert out.dtype == dtype and out.shape == x.shape
        assert torch.isfinite(out).all()
        assert (out.float() - expected).abs().max() < tolerance * expected.abs().max()


@torch.no_grad()
def test_bfloat16_embeds_the_timestep_at_bfloat16_precision():
    model = randomize(build_dit(TINY), seed=3)
    x, ref, _, audio = inputs(batch=1)
    step, rounded = torch.tensor([937.5]), torch.tensor([936.0])
    assert (model(x, ref, step, audio) - model(x, ref, rounded, audio)).abs().max() > 1e-5
    model = model.to(torch.bfloat16)
    x, ref, audio = x.bfloat16(), ref.bfloat16(), audio.bfloat16()
    assert torch.equal(model(x, ref, step, audio), model(x, ref, rounded, audio))


@torch.no_grad()
def test_sdpa_and_math_backends_agree():
    sdpa = randomize(build_dit(TINY, attention_backend="sdpa"))
    math = same_weights(TINY, sdpa, attention_backend="math")
    args = inputs()
    assert (sdpa(*args) - math(*args)).abs().max() < 1e-5


def test_unavailable_attention_backends_say_what_to_install():
    with pytest.raises(RAPInputError, match="sdpa, math, flash_attn, sage"):
        resolve_attention("xformers")
    for name, package in (("flash_attn", "flash-attn"), ("sage", "sageattention")):
        try:
            assert callable(resolve_attention(name))
        except RAPInputError as error:
            assert f"pip install {package}" in str(error)


@torch.no_grad()
def test_batch_of_two_equals_each_sample_alone():
    model = randomize(build_dit(TINY))
    x, ref, timestep, audio = inputs()
    batched = model(x, ref, timestep, audio)
    for i in range(2):
        alone = model(x[i : i + 1], ref[i : i + 1], timestep[i : i + 1], audio[i : i + 1])
        assert (batched[i : i + 1] - alone).abs().max() < 1e-5
    assert (batched[0] - batched[1]).abs().max() > 1e-2


@torch.no_grad()
def test_audio_windows_to_velocity():
    model = randomize(build_dit(TINY))
    frames = 3
    stride = TINY.vae.temporal_stride
    audio = TINY.audio
    windows = torch.randn(1, 1 + stride * (frames - 1), audio.window, audio.num_hidden_layers, audio.hidden_size)
    tokens = model.encode_audio(windows)
    assert tokens.shape == (1, frames, M, TINY.dit.dim)
    x, ref, timestep, _ = inputs(batch=1, frames=frames)
    assert model(x, ref, timestep, tokens).shape == x.shape
    with pytest.raises(RAPInputError, match="encode_audio"):
        model(x, ref, timestep, tokens[:, :2])


def face_latent(seed=5):
    return torch.randn(1, C, 1, 2, 2, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
@pytest.mark.parametrize(
    "branch, key", [("intensity_control", "intensity.mlp.0.weight"), ("identity_attention", "identity.attn.1.q.weight")]
)
def test_optional_branches_start_silent_and_old_checkpoints_load_unchanged(branch, key):
    old = randomize(build_dit(TINY)).eval()  # a checkpoint made before the branch existed
    x, ref, timestep, audio = inputs()
    before = old(x, ref, timestep, audio)
    extended = load_dit(old.state_dict(), tiny(**{branch: True}))
    for levels, face in (([[0.0, 0.0], [1.0, 1.0]], face_latent(5)), ([[0.9, 0.1], [0.2, 0.7]], face_latent(6))):
        assert torch.equal(extended(x, ref, timestep, audio, torch.tensor(levels), face), before)
    partial = {**old.state_dict(), key: extended.state_dict()[key]}  # one key of the branch, not the rest
    with pytest.raises(CheckpointError, match="missing keys: " + key.split(".")[0]):
        load_dit(partial, tiny(**{branch: True}))


@torch.no_grad()
def test_identity_branch_once_trained_follows_the_face():
    model = randomize(build_dit(tiny(identity_attention=True)), seed=3).eval()
    x, ref, timestep, audio = inputs()
    one, other = (model(x, ref, timestep, audio, face=face_latent(seed)) for seed in (5, 6))
    assert (one - other).abs().max() > 1e-2
    assert (model(x, ref, timestep, audio) - one).abs().max() > 1e-2  # no face: the branch is skipped
    reloaded = load_dit(model.state_dict(), tiny(identity_attention=True))
    assert torch.equal(reloaded(x, ref, timestep, audio, face=face_latent(5)), one)


@torch.no_grad()
def test_intensity_controls_reach_the_output_once_trained():
    model = randomize(build_dit(tiny(intensity_control=True)), seed=3).eval()  # a "trained" branch: non-zero
    x, ref, timestep, audio = inputs()
    low, high = (model(x, ref, timestep, audio, torch.tensor([[v, v]] * 2)) for v in (0.1, 0.9))
    assert (low - high).abs().max() > 1e-2
    assert torch.equal(model(x, ref, timestep, audio), model(x, ref, timestep, audio, torch.tensor([[0.5, 0.5]])))
    expression_only = model(x, ref, timestep, audio, torch.tensor([[0.9, 0.1]] * 2))
    assert (expression_only - low).abs().max() > 1e-2 and (expression_only - high).abs().max() > 1e-2
    reloaded = load_dit(model.state_dict(), tiny(intensity_control=True))  # saved branch weights are kept
    assert torch.equal(reloaded(x, ref, timestep, audio, torch.tensor([[0.9, 0.1]])), expression_only)
