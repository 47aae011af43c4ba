"""FantasyTalking's audio weights and windows in rap_core: both published layouts load strictly,
damaged files fail naming the key, the per-latent-frame windows are the release's, and the
wav2vec2 features are transformers' last hidden state."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from transformers import Wav2Vec2Config, Wav2Vec2Model

from rap_core.errors import CheckpointError
from rap_core.loading import load_fantasytalking
from rap_core.models.audio import Wav2Vec2Encoder
from rap_core.models.fantasytalking import latent_windows, tokens_per_frame, video_length

WAN14B_DIM, WAN14B_BLOCKS = 5120, 40  # Wan2.1-I2V-14B-720P


def official(dim: int, blocks: int, device=None, generator=None) -> dict[str, dict[str, torch.Tensor]]:
    """A state dict built to fantasytalking_model.ckpt's layout (research/fantasytalking.md §2.5)."""

    def tensor(*shape):
        return torch.empty(shape, device="meta") if device == "meta" else torch.randn(shape, generator=generator)

    audio = {f"blocks.{i}.cross_attn.processor.{n}_proj.weight": tensor(dim, 2048) for i in range(blocks) for n in "kv"}
    return {
        "proj_model": {"proj.weight": tensor(2048, 768), "norm.weight": tensor(2048), "norm.bias": tensor(2048)},
        "audio_processor": audio,
    }


def flat(nested: dict) -> dict[str, torch.Tensor]:
    return {f"{group}.{key}": value for group, part in nested.items() for key, value in part.items()}


def test_the_official_layout_at_full_size_loads_strictly():
    model = load_fantasytalking(flat(official(WAN14B_DIM, WAN14B_BLOCKS, device="meta")))
    assert (model.dim, len(model.blocks)) == (WAN14B_DIM, WAN14B_BLOCKS)
    assert sum(p.numel() for p in model.parameters()) == 840_437_760  # the release's 0.84 B


@pytest.fixture
def small():
    return official(64, 3, generator=torch.Generator().manual_seed(0))


def test_the_official_ckpt_and_both_flat_layouts_give_the_same_weights(small, tmp_path):
    torch.save(small, tmp_path / "fantasytalking_model.ckpt")  # the release's nested pickle
    save_file(flat(small), tmp_path / "official.safetensors")  # the release's flat .safetensors
    kijai = {
        key.replace("audio_processor.", "").replace(".processor.", "."): value.half()
        for key, value in flat(small).items()
    }  # Kijai's fantasytalking_fp16.safetensors
    save_file(kijai, tmp_path / "fantasytalking_fp16.safetensors")
    loaded = [
        load_fantasytalking(tmp_path / name, dtype=torch.float32).state_dict()
        for name in ("fantasytalking_model.ckpt", "official.safetensors", "fantasytalking_fp16.safetensors")
    ]
    assert torch.equal(
        loaded[0]["blocks.2.v_proj.weight"], small["audio_processor"]["blocks.2.cross_attn.processor.v_proj.weight"]
    )
    assert torch.equal(loaded[0]["proj.weight"], small["proj_model"]["proj.weight"])
    for other in loaded[1:]:
        assert other.keys() == loaded[0].keys()
        assert all(torch.allclose(other[k], loaded[0][k], atol=2e-3) for k in other)  # fp16 round trip


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda sd: sd["audio_processor"].pop("blocks.1.cross_attn.processor.v_proj.weight"), "blocks.1.v_proj.weight"),
        (lambda sd: sd["proj_model"].pop("norm.bias"), "norm.bias"),
        (lambda sd: sd["proj_model"].update({"proj.weight": torch.zeros(2048, 512)}), "proj.weight"),
        (
            lambda sd: sd["audio_processor"].update(
                {"blocks.0.cross_attn.processor.q_proj.weight": torch.zeros(64, 2048)}
            ),
            "audio_processor.blocks.0.cross_attn.processor.q_proj.weight",
        ),
        (lambda sd: sd.update({"audio_processor": {}}), "k_proj"),
    ],
)
def test_damaged_weights_fail_naming_the_key(small, tmp_path, damage, named):
    damage(small)
    torch.save(small, tmp_path / "damaged.ckpt")
    with pytest.raises(CheckpointError, match=named.replace(".", r"\.")):
        load_fantasytalking(tmp_path / "damaged.ckpt")


@pytest.mark.parametrize(
    "tokens, frames, width, first, last",
    [
        (175, 81, 17, 6, 14),  # 23 fps, 81 frames: research/fantasytalking.md §2.3
        (262, 121, 17, 6, 14),
        (252, 81, 21, 7, 18),  # 16 fps
    ],
)
def test_latent_windows_are_the_releases(tokens, frames, width, first, last):
    ids = torch.arange(1.0, tokens + 1)[:, None]  # [L, 1] token i holds i + 1
    windows, present = latent_windows(ids, (frames - 1) // 4 + 1, tokens / frames)
    assert windows.shape == ((frames - 1) // 4 + 1, width, 1)
    assert present.sum(1)[0] == first and present.sum(1)[-1] == last
    assert (windows[..., 0][~present] == 0).all()  # missing tokens are zero and masked
    for row, keep in zip(windows[..., 0], present):  # every window is a run of consecutive tokens
        held = row[keep]
        assert torch.equal(held, torch.arange(held[0], held[0] + len(held)))
    half = int(2 * tokens / frames)
    centre = int(tokens / frames * 6 / 2) - 1  # latent frame 1 covers video frames 1..5
    assert windows[1, 4 + half, 0] == centre + 1  # its window is centred there, past 4 expansion tokens


def test_tokens_per_frame_is_the_token_rate_over_the_frame_rate():
    assert tokens_per_frame(175, 16000 * 81 // 23, 16000, 23) == pytest.approx(175 / 81, rel=1e-3)


def test_the_video_covers_the_speech_in_wans_1_plus_4k_frames():
    assert video_length(4 * 16000, 16000, 23) == 93  # 92 frames
    assert video_length(16000 * 81 // 23, 16000, 23) == 81  # exactly 81: nothing added
    assert video_length(1, 16000, 23) == 1


def test_wav2vec2_features_are_transformers_last_hidden_state():
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    model = Wav2Vec2Model(config).eval()
    audio = torch.randn(1, 16000)
    with torch.no_grad():
        ours = Wav2Vec2Encoder(model).last_hidden_state(audio)
        normalised = (audio - audio.mean()) / torch.sqrt(audio.var(correction=0) + 1e-7)
        theirs = model(normalised).last_hidden_state
    assert ours.shape == theirs.shape == (1, 49, 48)
    assert torch.allclose(ours, theirs, atol=1e-5)
