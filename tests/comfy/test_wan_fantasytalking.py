"""FantasyTalking on ComfyUI's own Wan 2.1 I2V model: the shipped workflow's graph, with tiny files
in the real layouts, runs end to end in the real server through core samplers; audio_scale 0 is
the unpatched model exactly; ComfyUI's model manager loads and frees the audio weights."""

from __future__ import annotations

import gc
import json
import math
import wave
import weakref

import pytest
import torch
from harness import REPO_ROOT, ComfyServer, animated_outputs
from safetensors.torch import load_file
from test_workflows import SPEECH, media_stats
from tiny_wan import FANTASYTALKING_FILE, write_models

from rap_core.media.container import read_audio

FPS = 23
SPEECH_SECONDS = 1.2  # of assets/rap_speech.wav, for the server runs


def run(nodes, node_id: str, **inputs):
    return nodes[node_id].execute(**inputs).result


def expected_length(seconds: float) -> int:
    """Video frames covering the speech at FPS, rounded up to Wan's 1 + 4k."""
    return 1 + 4 * math.ceil((math.ceil(seconds * FPS) - 1) / 4)


def write_speech(path) -> None:
    """The first SPEECH_SECONDS of the speech asset as a 16-bit wav."""
    waveform, rate = read_audio(SPEECH)  # [C, S]
    part = (waveform[:, : round(rate * SPEECH_SECONDS)].T.clamp(-1, 1) * 32767).round().to(torch.int16)  # [S, C]
    with wave.open(str(path), "wb") as file:
        file.setnchannels(part.shape[1])
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(part.numpy().tobytes())


def tiny_graph(names: dict, tag: str, *, patched: bool = True, audio_scale: float = 1.0) -> dict:
    """workflows/api/rap_fantasytalking.json on the tiny files at 64x64, 3 steps and 1.2 s of the
    speech: the text
    encoder's output comes from the test-only TestTextEmbedding (umt5-xxl cannot be made small),
    there is no CLIP vision input (optional in Wan Image To Video), and the sampled latent is saved."""
    prompt = json.loads((REPO_ROOT / "workflows" / "api" / "rap_fantasytalking.json").read_text())
    for node in ("4", "7", "8"):
        del prompt[node]
    prompt["5"] = {"class_type": "TestTextEmbedding", "inputs": {"seed": 1, "tokens": 8, "width": 4096}}
    prompt["6"] = {"class_type": "TestTextEmbedding", "inputs": {"seed": 2, "tokens": 8, "width": 4096}}
    del prompt["14"]["inputs"]["clip_vision_output"]
    prompt["2"]["inputs"]["audio"] = "fantasytalking_speech.wav"
    prompt["3"]["inputs"]["unet_name"] = names["unet"]
    prompt["9"]["inputs"]["vae_name"] = names["vae"]
    prompt["10"]["inputs"].update(weights=names["fantasytalking"], weight_dtype="fp32")
    prompt["11"]["inputs"]["encoder"] = names["encoder"]
    prompt["12"]["inputs"]["audio_scale"] = audio_scale
    prompt["14"]["inputs"].update(width=64, height=64)
    prompt["15"]["inputs"]["steps"] = 3
    if not patched:
        prompt["13"]["inputs"]["model"] = ["3", 0]
    prompt["18"]["inputs"]["filename_prefix"] = f"fantasytalking/{tag}"
    prompt["19"] = {
        "class_type": "SaveLatent",
        "inputs": {"samples": ["15", 0], "filename_prefix": f"fantasytalking/{tag}"},
    }
    return prompt


@pytest.fixture(scope="module")
def server_runs(comfy_server: ComfyServer, comfy) -> dict:
    """The tiny graph queued over HTTP unpatched, with audio_scale 0 and with audio_scale 1: each
    run's sampled latent and mp4."""
    names = write_models(comfy_server.base / "models")
    write_speech(comfy_server.input_dir / "fantasytalking_speech.wav")
    results = {}
    with comfy_server.client() as client:
        for tag, options in {
            "unpatched": dict(patched=False),
            "scale0": dict(audio_scale=0.0),
            "scale1": dict(audio_scale=1.0),
        }.items():
            run_ = client.run(tiny_graph(names, tag, **options), timeout=600)
            run_.raise_for_status()
            history = client.history(run_.prompt_id)
            (latent,) = history["outputs"]["19"]["latents"]
            stored = load_file(comfy_server.output_dir / latent["subfolder"] / latent["filename"])
            (video,) = animated_outputs(history)
            results[tag] = dict(latent=stored["latent_tensor"], video=media_stats(client.download(video)))
    return results


def test_the_patched_core_wan_model_runs_end_to_end_and_the_video_follows_the_audio(server_runs):
    length = expected_length(SPEECH_SECONDS)
    assert length == 29  # 1.2 s at 23 fps: 28 frames, rounded up to 1 + 4k
    for run_ in server_runs.values():
        assert run_["latent"].shape == (1, 16, (length - 1) // 4 + 1, 8, 8)
        assert run_["video"]["frames"] == length and run_["video"]["fps"] == FPS
        assert abs(run_["video"]["audio_seconds"] - SPEECH_SECONDS) < 0.1
    difference = (server_runs["scale1"]["latent"] - server_runs["unpatched"]["latent"]).abs().max()
    assert difference > 1e-2  # the audio branch acts


def test_audio_scale_zero_gives_the_unpatched_model_exactly(server_runs):
    assert torch.equal(server_runs["scale0"]["latent"], server_runs["unpatched"]["latent"])


@pytest.fixture(scope="module")
def tiny(comfy, tmp_path_factory):
    """The tiny files in a models folder registered in this process, and the loaded networks."""
    import folder_paths
    from comfy.sd import load_diffusion_model

    models = tmp_path_factory.mktemp("models")
    names = write_models(models)
    folder_paths.add_model_folder_path("rap", str(models / "rap"))
    _, nodes = comfy
    (audio_weights,) = run(
        nodes, "RAPFantasyTalkingLoader", weights=names["fantasytalking"], weight_dtype="fp32", download=False
    )
    (encoder,) = run(nodes, "RAPAudioEncoderLoader", encoder=names["encoder"], preset="flashhead-lite", download=False)
    wan = load_diffusion_model(str(models / "diffusion_models" / names["unet"]))
    audio = {
        "waveform": 0.1 * torch.randn(1, 2, 44100, generator=torch.Generator().manual_seed(0)),
        "sample_rate": 44100,
    }
    return dict(wan=wan, audio_weights=audio_weights, encoder=encoder, audio=audio)


def apply(nodes, tiny, **options):
    settings = dict(fps=FPS, audio_scale=1.0, audio_cfg=4.5, start_percent=0.0, end_percent=0.8) | options
    return run(
        nodes,
        "RAPFantasyTalkingApply",
        model=tiny["wan"],
        fantasytalking=tiny["audio_weights"],
        audio_encoder=tiny["encoder"],
        audio=tiny["audio"],
        **settings,
    )


def test_comfyui_loads_the_patched_model_with_its_audio_weights_and_unloading_frees_them(comfy, tiny):
    mm, nodes = comfy
    plain = tiny["wan"]
    (audio_weights,) = run(
        nodes, "RAPFantasyTalkingLoader", weights=FANTASYTALKING_FILE, weight_dtype="fp32", download=False
    )
    patched, length = apply(nodes, dict(tiny, audio_weights=audio_weights))
    assert length == expected_length(1.0) == 25
    audio_bytes = sum(p.numel() * p.element_size() for p in audio_weights.blocks.parameters())
    assert patched.model_size() == plain.model_size() + audio_bytes  # ComfyUI budgets them
    plain_names = set(dict(plain.model.named_parameters()))

    mm.unload_all_models()
    mm.load_models_gpu([patched])
    assert any(entry.model is patched for entry in mm.current_loaded_models)
    assert patched.loaded_size() == plain.model_size() + audio_bytes
    loaded_names = set(dict(patched.model.named_parameters()))
    assert plain_names < loaded_names  # every core key (LoRA targets) still names its tensor
    assert "diffusion_model.blocks.1.cross_attn.audio.v_proj.weight" in loaded_names

    mm.unload_all_models()
    assert not any(entry.model is patched for entry in mm.current_loaded_models)
    assert patched.loaded_size() == 0
    assert set(dict(plain.model.named_parameters())) == plain_names  # the shared model holds no audio weights
    assert type(plain.model.diffusion_model.blocks[0].cross_attn).__name__ == "WanI2VCrossAttention"
    audio_weight = weakref.ref(patched.get_model_object("diffusion_model.blocks.0.cross_attn").audio.k_proj.weight)
    del patched
    gc.collect()
    assert audio_weight() is not None  # the loader's output still holds them, as ComfyUI's cache would
    del audio_weights
    gc.collect()
    assert audio_weight() is None  # nothing in ComfyUI's model manager kept them alive


def test_bad_settings_and_encoders_are_explained(comfy, tiny):
    _, nodes = comfy  # errors are the pack's RAPInputError, a ValueError
    with pytest.raises(ValueError, match="start_percent"):
        apply(nodes, tiny, start_percent=0.9, end_percent=0.5)
    (mel,) = run(nodes, "RAPAudioEncoderLoader", encoder="built-in", preset="demo", download=False)
    with pytest.raises(ValueError, match="wav2vec2-base-960h"):
        apply(nodes, dict(tiny, encoder=mel))


def test_weights_of_another_wan_size_or_a_twice_patched_model_are_refused(comfy, tiny, tmp_path):
    _, nodes = comfy
    from tiny_wan import fantasytalking_checkpoint

    from rap_core.loading import load_fantasytalking

    torch.save(fantasytalking_checkpoint(blocks=3), tmp_path / "three_blocks.ckpt")
    with pytest.raises(ValueError, match="3 blocks of width 128.*the MODEL has 2 blocks of width 128"):
        apply(nodes, dict(tiny, audio_weights=load_fantasytalking(tmp_path / "three_blocks.ckpt")))
    patched, _ = apply(nodes, tiny)
    with pytest.raises(ValueError, match="already has FantasyTalking"):
        apply(nodes, dict(tiny, wan=patched))


def test_the_audio_attention_joins_the_text_and_image_attention_before_the_output_projection(comfy):
    import comfy.ops
    from comfy.ldm.wan.model import WanI2VCrossAttention

    from rap_core.models.fantasytalking import AudioCrossAttention, AudioFrames, AudioKeyValue, latent_windows

    g = torch.Generator().manual_seed(0)
    attention = WanI2VCrossAttention(256, 2, operation_settings={"operations": comfy.ops.manual_cast})
    keys_values = AudioKeyValue(256)
    for parameter in [*attention.parameters(), *keys_values.parameters()]:
        parameter.data = 0.05 * torch.randn(parameter.shape, generator=g)
    frames, per_frame_tokens = 3, 6
    x = torch.randn(2, frames * per_frame_tokens, 256, generator=g)  # [B, F*N, D]
    context = torch.randn(2, 257 + 8, 256, generator=g)  # CLIP image tokens, then text
    windows, present = latent_windows(torch.randn(40, 2048, generator=g), frames, 2.2)
    patched = AudioCrossAttention(attention, keys_values, "audio")
    heard = AudioFrames(windows, present, row_scale=torch.tensor([1.5, 0.0]))
    with torch.no_grad():
        out = patched(x, context, context_img_len=257, transformer_options={"audio": heard})
        plain = attention(x, context, context_img_len=257)
        assert torch.equal(patched(x, context, context_img_len=257), plain)  # no audio in the call: untouched
        assert torch.equal(out[1], plain[1])  # a silent row: untouched
        q = attention.norm_q(attention.q(x[0]))  # [F*N, D]
        audio = []
        for f in range(frames):  # the release: each latent frame's queries attend to its own window
            keys, values = keys_values.k_proj(windows[f][present[f]]), keys_values.v_proj(windows[f][present[f]])
            per_head = []
            for h in range(2):
                head = slice(128 * h, 128 * (h + 1))
                weights = torch.softmax(
                    q[f * per_frame_tokens : (f + 1) * per_frame_tokens, head] @ keys[:, head].T / 128**0.5, dim=-1
                )
                per_head.append(weights @ values[:, head])
            audio.append(torch.cat(per_head, dim=1))
        # o(text + image + 1.5 audio) = o(text + image) + 1.5 W_o audio
        expected = plain[0] + 1.5 * torch.cat(audio) @ attention.o.weight.T
    assert torch.allclose(out[0], expected, atol=1e-5)
