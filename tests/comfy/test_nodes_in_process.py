"""The pack's nodes inside ComfyUI's own Python modules (no server): the node chain gives the
engine's frames, split samplers join without a seam, ComfyUI's model manager holds the networks,
and file choices are validated with messages that say where the file goes."""

from __future__ import annotations

import pytest
import torch

from rap_core.pipeline import RAPPipeline

BUILTIN = "built-in"
FLASHHEAD_DIT = "SoulX-FlashHead-1_3B/Model_Lite/diffusion_pytorch_model.safetensors"
TINY_SAMPLING = dict(steps=2, shift=5.0, sampler="euler", continuity="inherit", chunk_latents=3, color_correction=0.0)


def run(nodes, node_id: str, **inputs):
    return nodes[node_id].execute(**inputs).result


@pytest.fixture(scope="module")
def talk(comfy):
    """The tiny networks, 2.3 s of 44.1 kHz stereo speech-like noise and a 80x64 portrait, encoded."""
    _, nodes = comfy
    (model,) = run(
        nodes, "RAPModelLoader", ckpt_name=BUILTIN, preset="tiny", weight_dtype="auto", attention="sdpa", download=False
    )
    (vae,) = run(nodes, "RAPVAELoader", vae_name=BUILTIN, preset="tiny", weight_dtype="auto", download=False)
    (encoder,) = run(nodes, "RAPAudioEncoderLoader", encoder=BUILTIN, preset="tiny", download=False)
    g = torch.Generator().manual_seed(0)
    audio = {"waveform": 0.1 * torch.randn(1, 2, int(44100 * 2.3), generator=g), "sample_rate": 44100}
    image = torch.rand(1, 80, 64, 3, generator=g)
    embeds, frames = run(nodes, "RAPAudioEncode", audio_encoder=encoder, audio=audio, frames=0)
    reference, cropped, _ = run(nodes, "RAPReferenceEncode", vae=vae, image=image)
    return dict(
        model=model,
        vae=vae,
        encoder=encoder,
        audio=audio,
        image=image,
        embeds=embeds,
        frames=frames,
        reference=reference,
        cropped=cropped,
    )


def sampler_inputs(talk, **overrides):
    inputs = dict(
        model=talk["model"],
        vae=talk["vae"],
        audio_embeds=talk["embeds"],
        reference=talk["reference"],
        seed=5,
        steps=2,
        cfg=1.0,
        shift=5.0,
        sampler="euler",
        continuity="inherit",
        continuity_n=1,
        chunk_latents=3,
        audio_attention="model",
        alpha_w=1.0,
        alpha_delta=0.0,
        color_correction=0.0,
        expression=0.5,
        head_motion=0.5,
        frames=0,
    )
    return inputs | overrides


@pytest.mark.parametrize("chunk_latents", [3, 4])  # 4: not the preset's, the sampler re-encodes the portrait
def test_node_chain_gives_the_engines_frames_and_the_matching_audio(comfy, talk, chunk_latents):
    _, nodes = comfy
    (latents,) = run(nodes, "RAPSampler", **sampler_inputs(talk, chunk_latents=chunk_latents))
    images, fps, audio = run(nodes, "RAPDecode", vae=talk["vae"], latents=latents)
    assert talk["frames"] == 58 == images.shape[0]  # ceil(2.3 s * 25)
    assert images.shape == (58, 64, 64, 3) and talk["cropped"].shape == (1, 64, 64, 3) and fps == 25.0
    assert audio["sample_rate"] == 44100 and audio["waveform"].shape == (1, 2, 58 * 44100 // 25)
    samples = talk["audio"]["waveform"].shape[-1]
    assert torch.equal(audio["waveform"][0, :, :samples], talk["audio"]["waveform"][0])
    assert not audio["waveform"][0, :, samples:].any()  # the last frame's rest is silence
    engine = RAPPipeline.from_preset("tiny").generate(
        talk["image"],
        talk["audio"]["waveform"][0],
        44100,
        seed=5,
        inherit_latents=1,
        **(TINY_SAMPLING | dict(chunk_latents=chunk_latents)),
    )
    assert (engine - images).abs().max() < 1e-4


@pytest.mark.parametrize("continuity", ["inherit", "motion_frames"])
def test_two_chained_samplers_equal_one(comfy, talk, continuity):
    _, nodes = comfy
    options = dict(continuity=continuity, sampler="renoise", color_correction=0.5)
    (whole,) = run(nodes, "RAPSampler", **sampler_inputs(talk, **options))
    (first,) = run(nodes, "RAPSampler", **sampler_inputs(talk, frames=20, **options))
    (second,) = run(nodes, "RAPSampler", **sampler_inputs(talk, previous=first, seed=999, **options))
    decode = [run(nodes, "RAPDecode", vae=talk["vae"], latents=part) for part in (whole, first, second)]
    (all_frames, _, all_audio), (head, _, head_audio), (tail, _, tail_audio) = decode
    assert head.shape[0] == 33  # two 3-latent chunks: 17 + 16 frames, the first chunk boundary past 20
    assert torch.equal(torch.cat([head, tail]), all_frames)
    assert torch.equal(torch.cat([head_audio["waveform"], tail_audio["waveform"]], dim=2), all_audio["waveform"])
    (again,) = run(nodes, "RAPSampler", **sampler_inputs(talk, previous=first, **options))
    assert torch.equal(run(nodes, "RAPDecode", vae=talk["vae"], latents=again)[0], tail)  # `first` was not consumed


@pytest.mark.parametrize("context", ["reference-stream", "reference-once"])
def test_reference_audio_contexts_ride_in_the_embeds_and_chained_samplers_equal_one(comfy, talk, context):
    _, nodes = comfy
    embeds, frames = run(
        nodes, "RAPAudioEncode", audio_encoder=talk["encoder"], audio=talk["audio"], frames=0, audio_context=context
    )
    assert embeds.features.context == context and frames == 58
    (whole,) = run(nodes, "RAPSampler", **sampler_inputs(talk, audio_embeds=embeds))
    (first,) = run(nodes, "RAPSampler", **sampler_inputs(talk, audio_embeds=embeds, frames=20))
    (second,) = run(nodes, "RAPSampler", **sampler_inputs(talk, audio_embeds=embeds, previous=first, seed=999))
    all_frames, head, tail = (
        run(nodes, "RAPDecode", vae=talk["vae"], latents=part)[0] for part in (whole, first, second)
    )
    assert all_frames.shape[0] == 58 and torch.equal(torch.cat([head, tail]), all_frames)
    engine = RAPPipeline.from_preset("tiny").generate(
        talk["image"],
        talk["audio"]["waveform"][0],
        44100,
        seed=5,
        inherit_latents=1,
        audio_context=context,
        **TINY_SAMPLING,
    )
    assert (engine - all_frames).abs().max() < 1e-4
    with pytest.raises(ValueError, match="chunk_latents and continuity_n"):  # encoded for the preset's chunking
        run(nodes, "RAPSampler", **sampler_inputs(talk, audio_embeds=embeds, chunk_latents=4))


def test_continuing_with_other_chunk_settings_or_past_the_end_is_explained(comfy, talk):
    _, nodes = comfy
    (first,) = run(nodes, "RAPSampler", **sampler_inputs(talk, frames=20))
    with pytest.raises(ValueError, match=r"changed: steps.*steps=2"):
        run(nodes, "RAPSampler", **sampler_inputs(talk, previous=first, steps=3))
    (whole,) = run(nodes, "RAPSampler", **sampler_inputs(talk))
    with pytest.raises(ValueError, match="already reached the end of the audio"):
        run(nodes, "RAPSampler", **sampler_inputs(talk, previous=whole))


def test_comfyui_model_manager_holds_and_frees_the_networks(comfy, talk):
    mm, nodes = comfy
    run(nodes, "RAPSampler", **sampler_inputs(talk))
    run(nodes, "RAPAudioEncode", audio_encoder=talk["encoder"], audio=talk["audio"], frames=10)
    patchers = [talk[name].patcher for name in ("model", "vae", "encoder")]
    loaded = [entry.model for entry in mm.current_loaded_models]
    assert all(any(p is q for q in loaded) for p in patchers)
    assert {type(p.model).__name__ for p in patchers} == {"RAPTransformer", "VideoVAE", "Wav2Vec2Encoder"}
    mm.unload_all_models()
    assert not any(entry.model is p for entry in mm.current_loaded_models for p in patchers)


def test_file_choices_are_validated_with_where_to_put_the_file(comfy):
    _, nodes = comfy
    loader = nodes["RAPModelLoader"]
    message = loader.validate_inputs(ckpt_name=FLASHHEAD_DIT, preset="flashhead-lite", download=False)
    assert "diffusion_pytorch_model.safetensors" in message and "models/rap/SoulX-FlashHead-1_3B/Model_Lite" in message
    assert "Soul-AILab/SoulX-FlashHead-1_3B" in message
    assert loader.validate_inputs(ckpt_name=FLASHHEAD_DIT, preset="flashhead-lite", download=True) is True
    assert "only for presets tiny and demo" in loader.validate_inputs(
        ckpt_name=BUILTIN, preset="flashhead-lite", download=False
    )
    assert loader.validate_inputs(ckpt_name=BUILTIN, preset="tiny", download=False) is True
    message = loader.validate_inputs(ckpt_name=BUILTIN, preset="auto", download=False)
    assert "set the preset to one of them, or with preset auto, choose a weight file" in message
    assert loader.validate_inputs(ckpt_name=BUILTIN, preset="demo", download=False) is True
    message = nodes["RAPAudioEncoderLoader"].validate_inputs(
        encoder="wav2vec2-base-960h", preset="flashhead-lite", download=False
    )
    assert (
        "'config.json'" in message
        and "models/rap/wav2vec2-base-960h" in message
        and "facebook/wav2vec2-base-960h" in message
    )


def test_weight_files_load_through_comfy_cast_layers_and_sample_the_same(comfy, talk, tmp_path):
    """A DiT and VAE saved to a user's rap folder load (comfy.ops.manual_cast layers) and give the
    frames of the built-in networks they were saved from."""
    import folder_paths
    from safetensors.torch import save_file

    _, nodes = comfy
    (tmp_path / "mine").mkdir()
    save_file(
        {k: v.contiguous() for k, v in talk["model"].model.state_dict().items()}, tmp_path / "mine" / "dit.safetensors"
    )
    save_file(
        {k: v.contiguous() for k, v in talk["vae"].model.state_dict().items()}, tmp_path / "mine" / "vae.safetensors"
    )
    folder_paths.add_model_folder_path("rap", str(tmp_path))
    assert "mine/dit.safetensors" in nodes["RAPModelLoader"].define_schema().inputs[0].options
    (model,) = run(
        nodes,
        "RAPModelLoader",
        ckpt_name="mine/dit.safetensors",
        preset="tiny",
        weight_dtype="fp32",
        attention="sdpa",
        download=False,
    )
    (vae,) = run(
        nodes, "RAPVAELoader", vae_name="mine/vae.safetensors", preset="tiny", weight_dtype="fp32", download=False
    )
    assert hasattr(model.model.blocks[0].self_attn.q, "comfy_cast_weights")
    reference, _, _ = run(nodes, "RAPReferenceEncode", vae=vae, image=talk["image"])
    from_files = run(
        nodes,
        "RAPDecode",
        vae=vae,
        latents=run(nodes, "RAPSampler", **sampler_inputs(talk, model=model, vae=vae, reference=reference))[0],
    )[0]
    built_in = run(nodes, "RAPDecode", vae=talk["vae"], latents=run(nodes, "RAPSampler", **sampler_inputs(talk))[0])[0]
    assert (from_files - built_in).abs().max() < 1e-5


def test_the_demo_models_identity_branch_sees_the_portraits_centre_crop(comfy):
    """The demo DiT has the identity branch: the sampler feeds it the portrait's centre crop
    (rap_core.face.CENTRE_FACE), as the engine does without a face box; another crop changes the frames."""
    _, nodes = comfy
    (model,) = run(
        nodes, "RAPModelLoader", ckpt_name=BUILTIN, preset="demo", weight_dtype="auto", attention="sdpa", download=False
    )
    (vae,) = run(nodes, "RAPVAELoader", vae_name=BUILTIN, preset="demo", weight_dtype="auto", download=False)
    (encoder,) = run(nodes, "RAPAudioEncoderLoader", encoder=BUILTIN, preset="demo", download=False)
    assert model.model.identity is not None
    g = torch.Generator().manual_seed(1)
    audio = {"waveform": 0.1 * torch.randn(1, 1, 16000, generator=g), "sample_rate": 16000}
    image = torch.rand(1, 128, 128, 3, generator=g)
    embeds, _ = run(nodes, "RAPAudioEncode", audio_encoder=encoder, audio=audio, frames=0)
    reference, _, _ = run(nodes, "RAPReferenceEncode", vae=vae, image=image)
    demo = dict(steps=2, shift=3.0, sampler="euler", continuity="inherit", chunk_latents=9, color_correction=0.0)
    (latents,) = run(
        nodes, "RAPSampler", **sampler_inputs(dict(model=model, vae=vae, embeds=embeds, reference=reference), **demo)
    )
    images = run(nodes, "RAPDecode", vae=vae, latents=latents)[0]
    engine = RAPPipeline.from_preset("demo")
    centre = engine.generate(image, audio["waveform"][0], 16000, seed=5, inherit_latents=1, **demo)
    corner = engine.generate(
        image, audio["waveform"][0], 16000, seed=5, inherit_latents=1, face_box=(0.0, 0.5, 0.0, 0.5), **demo
    )
    assert images.shape == (25, 128, 128, 3)
    assert (centre - images).abs().max() < 1e-4
    assert (corner - images).abs().max() > 1e-3
