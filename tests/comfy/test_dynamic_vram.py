"""Dynamic VRAM: ComfyUI 0.33 turns it on for NVIDIA GPUs (comfy-aimdo). Its main.py then sets
`comfy.memory_management.aimdo_enabled` and makes `CoreModelPatcher` the dynamic patcher, and
ComfyUI's Linear layers are built with no tensors until `load_state_dict` runs.

Here both are set as main.py sets them, on the CPU, around in-process loader calls: every loader
and preset loads the networks the engine loads from the same weights, ComfyUI's model manager holds
and frees them, and a core Wan model patched by RAP FantasyTalking Apply samples what it samples with
dynamic VRAM off. Trees without dynamic VRAM (0.3.75) run the same tests in their one mode.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import pytest
import torch
from harness import comfy_dir
from safetensors.torch import save_file
from tiny_wan import FANTASYTALKING_FILE, WAV2VEC2_FOLDER, fantasytalking_checkpoint, write_models

from rap_core.config import get_preset
from rap_core.loading.builtin import DEMO_WEIGHTS, builtin_dit, builtin_vae, load_audio_encoder
from rap_core.loading.models import load_dit, load_fantasytalking, load_vae, load_wav2vec2
from rap_core.pipeline import RAPPipeline

BUILTIN = "built-in"
KIJAI_FILE = "FantasyTalking/fantasytalking_fp16.safetensors"


def has_dynamic_vram() -> bool:
    """Whether the ComfyUI under test has dynamic VRAM (0.33 and later)."""
    source = comfy_dir() / "comfy" / "memory_management.py"
    return source.is_file() and "aimdo_enabled" in source.read_text()


VRAM_MODES = ["static"] + (["dynamic"] if has_dynamic_vram() else [])


@contextmanager
def vram(mode: str):
    """ComfyUI's model setup as main.py leaves it: with "dynamic", the aimdo flag and CoreModelPatcher."""
    if mode == "static":
        yield
        return
    import comfy.memory_management
    import comfy.model_patcher

    saved = comfy.memory_management.aimdo_enabled, comfy.model_patcher.CoreModelPatcher
    comfy.memory_management.aimdo_enabled = True
    comfy.model_patcher.CoreModelPatcher = comfy.model_patcher.ModelPatcherDynamic
    try:
        yield
    finally:
        comfy.memory_management.aimdo_enabled, comfy.model_patcher.CoreModelPatcher = saved


def run(nodes, node_id: str, **inputs):
    return nodes[node_id].execute(**inputs).result


@pytest.fixture(scope="module")
def models(comfy, tmp_path_factory):
    """A models folder registered in this process: the demo DiT and VAE as user files, the tiny
    wav2vec2 folder, and FantasyTalking weights in the official .ckpt and Kijai's .safetensors layouts."""
    import folder_paths

    root = tmp_path_factory.mktemp("models")
    names = write_models(root)
    rap = root / "rap"
    (rap / "user-demo").mkdir()
    for name in ("dit.safetensors", "vae.safetensors"):
        shutil.copy(DEMO_WEIGHTS / name, rap / "user-demo" / name)
    kijai = {
        key.replace("audio_processor.", "").replace(".processor", ""): value.half()
        for part, tensors in fantasytalking_checkpoint().items()
        for key, value in ((f"{part}.{name}", tensor) for name, tensor in tensors.items())
    }
    save_file(kijai, rap / KIJAI_FILE)
    folder_paths.add_model_folder_path("rap", str(rap))
    return dict(root=root, rap=rap, **names)


DEMO, TINY = get_preset("demo"), get_preset("tiny")
# (node, its inputs, what the engine loads from the same weights: (models folder) -> nn.Module)
LOADS = {
    "dit-tiny": ("RAPModelLoader", dict(ckpt_name=BUILTIN, preset="tiny"), lambda rap: builtin_dit(TINY)),
    "dit-demo": ("RAPModelLoader", dict(ckpt_name=BUILTIN, preset="demo"), lambda rap: builtin_dit(DEMO)),
    "dit-file": (
        "RAPModelLoader",
        dict(ckpt_name="user-demo/dit.safetensors", preset="demo"),
        lambda rap: load_dit(rap / "user-demo" / "dit.safetensors", DEMO),
    ),
    "dit-file-auto": (
        "RAPModelLoader",
        dict(ckpt_name="user-demo/dit.safetensors", preset="auto"),
        lambda rap: load_dit(rap / "user-demo" / "dit.safetensors", DEMO),
    ),
    "vae-tiny": ("RAPVAELoader", dict(vae_name=BUILTIN, preset="tiny"), lambda rap: builtin_vae(TINY)),
    "vae-demo": ("RAPVAELoader", dict(vae_name=BUILTIN, preset="demo"), lambda rap: builtin_vae(DEMO)),
    "vae-file": (
        "RAPVAELoader",
        dict(vae_name="user-demo/vae.safetensors", preset="demo"),
        lambda rap: load_vae(rap / "user-demo" / "vae.safetensors", DEMO),
    ),
    "vae-file-auto": (
        "RAPVAELoader",
        dict(vae_name="user-demo/vae.safetensors", preset="auto"),
        lambda rap: load_vae(rap / "user-demo" / "vae.safetensors", DEMO),
    ),
    "encoder-tiny": (
        "RAPAudioEncoderLoader",
        dict(encoder=BUILTIN, preset="tiny"),
        lambda rap: load_audio_encoder(TINY),
    ),
    "encoder-demo": (
        "RAPAudioEncoderLoader",
        dict(encoder=BUILTIN, preset="demo"),
        lambda rap: load_audio_encoder(DEMO),
    ),
    "encoder-folder": (
        "RAPAudioEncoderLoader",
        dict(encoder=WAV2VEC2_FOLDER, preset="flashhead-lite"),
        lambda rap: load_wav2vec2(rap / WAV2VEC2_FOLDER),
    ),
    "encoder-folder-auto": (
        "RAPAudioEncoderLoader",
        dict(encoder=WAV2VEC2_FOLDER, preset="auto"),
        lambda rap: load_wav2vec2(rap / WAV2VEC2_FOLDER),
    ),
    "fantasytalking-ckpt": (
        "RAPFantasyTalkingLoader",
        dict(weights=FANTASYTALKING_FILE),
        lambda rap: load_fantasytalking(rap / FANTASYTALKING_FILE),
    ),
    "fantasytalking-safetensors": (
        "RAPFantasyTalkingLoader",
        dict(weights=KIJAI_FILE),
        lambda rap: load_fantasytalking(rap / KIJAI_FILE),
    ),
}
DEFAULTS = {
    "RAPModelLoader": dict(weight_dtype="fp32", attention="sdpa", download=False),
    "RAPVAELoader": dict(weight_dtype="fp32", download=False),
    "RAPAudioEncoderLoader": dict(download=False),
    "RAPFantasyTalkingLoader": dict(weight_dtype="fp32", download=False),
}


def network_module(output) -> torch.nn.Module:
    """The nn.Module a loader node gave: inside its Network, or FantasyTalking's weights as they are."""
    return output.patcher.model if hasattr(output, "patcher") else output


@pytest.mark.parametrize("mode", VRAM_MODES)
@pytest.mark.parametrize("case", list(LOADS))
def test_every_loader_loads_what_the_engine_loads(comfy, models, mode, case):
    _, nodes = comfy
    node, inputs, engine = LOADS[case]
    with vram(mode):
        (output,) = run(nodes, node, **inputs, **DEFAULTS[node])
    if inputs.get("preset") == "auto":  # the preset read from the file
        assert output.config.name == ("flashhead-lite" if node == "RAPAudioEncoderLoader" else "demo")
    loaded, expected = network_module(output).state_dict(), engine(models["rap"]).state_dict()
    assert sorted(loaded) == sorted(expected)
    assert all(torch.equal(loaded[key].float(), expected[key].float()) for key in expected)
    linears = [m for m in network_module(output).modules() if isinstance(m, torch.nn.Linear)]
    assert all(m.weight is not None and not m.weight.is_meta for m in linears)


_g = torch.Generator().manual_seed(2)  # 1 s of noise and a random portrait for the demo chain
DEMO_AUDIO = {"waveform": 0.1 * torch.randn(1, 1, 16000, generator=_g), "sample_rate": 16000}
DEMO_IMAGE = torch.rand(1, 128, 128, 3, generator=_g)


def demo_chain(nodes, mm):
    """The demo loaders, encoders, sampler (2 steps) and decoder on 1 s of noise and a random
    portrait: (frames, the three networks' patchers, the patchers ComfyUI holds loaded after it)."""
    (model,) = run(nodes, "RAPModelLoader", ckpt_name=BUILTIN, preset="demo", **DEFAULTS["RAPModelLoader"])
    (vae,) = run(nodes, "RAPVAELoader", vae_name=BUILTIN, preset="demo", **DEFAULTS["RAPVAELoader"])
    (encoder,) = run(nodes, "RAPAudioEncoderLoader", encoder=BUILTIN, preset="demo", download=False)
    assert hasattr(model.patcher.model.blocks[0].self_attn.q, "comfy_cast_weights")
    embeds, _ = run(nodes, "RAPAudioEncode", audio_encoder=encoder, audio=DEMO_AUDIO, frames=0)
    reference, _, _ = run(nodes, "RAPReferenceEncode", vae=vae, image=DEMO_IMAGE)
    (latents,) = run(
        nodes,
        "RAPSampler",
        model=model,
        vae=vae,
        audio_embeds=embeds,
        reference=reference,
        seed=5,
        steps=2,
        cfg=1.0,
        shift=3.0,
        sampler="euler",
        continuity="inherit",
        continuity_n=1,
        chunk_latents=9,
        audio_attention="model",
        alpha_w=1.0,
        alpha_delta=0.0,
        color_correction=0.0,
        expression=0.5,
        head_motion=0.5,
        frames=0,
    )
    frames = run(nodes, "RAPDecode", vae=vae, latents=latents)[0]
    return frames, [network.patcher for network in (model, vae, encoder)], [e.model for e in mm.current_loaded_models]


@pytest.mark.parametrize("mode", VRAM_MODES)
def test_the_demo_chain_gives_the_same_frames_and_the_model_manager_holds_and_frees_it(comfy, mode):
    mm, nodes = comfy
    with vram(mode):
        frames, patchers, loaded = demo_chain(nodes, mm)
        mm.unload_all_models()
        assert not any(entry.model is p for entry in mm.current_loaded_models for p in patchers)
    assert all(any(p is q for q in loaded) for p in patchers)
    engine = RAPPipeline.from_preset("demo").generate(
        DEMO_IMAGE,
        DEMO_AUDIO["waveform"][0],
        16000,
        seed=5,
        inherit_latents=1,
        steps=2,
        shift=3.0,
        sampler="euler",
        continuity="inherit",
        chunk_latents=9,
        color_correction=0.0,
    )
    assert frames.shape == (25, 128, 128, 3)
    assert (engine - frames).abs().max() < 1e-4


def sample_wan(nodes, wan_vae, model, models) -> torch.Tensor:
    """Three Euler steps of the patched tiny Wan 2.1 I2V model at 64x64 over 1 s of speech, through
    core Wan Image To Video and KSampler."""
    from comfy_extras.nodes_wan import WanImageToVideo

    import nodes as core

    audio = {
        "waveform": 0.1 * torch.randn(1, 1, 16000, generator=torch.Generator().manual_seed(3)),
        "sample_rate": 16000,
    }
    (weights,) = run(
        nodes, "RAPFantasyTalkingLoader", weights=FANTASYTALKING_FILE, **DEFAULTS["RAPFantasyTalkingLoader"]
    )
    (encoder,) = run(nodes, "RAPAudioEncoderLoader", encoder=WAV2VEC2_FOLDER, preset="flashhead-lite", download=False)
    patched, length = run(
        nodes,
        "RAPFantasyTalkingApply",
        model=model,
        fantasytalking=weights,
        audio_encoder=encoder,
        audio=audio,
        fps=23,
        audio_scale=1.0,
        audio_cfg=4.5,
        start_percent=0.0,
        end_percent=0.8,
    )
    assert type(patched) is type(model)  # a clone: ModelPatcherDynamic stays dynamic
    text = [[[torch.randn(1, 8, 4096, generator=torch.Generator().manual_seed(seed)), {}]] for seed in (1, 2)]
    positive, negative, latent = WanImageToVideo.execute(
        text[0],
        text[1],
        wan_vae,
        width=64,
        height=64,
        length=length,
        batch_size=1,
        start_image=torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(4)),
    ).result
    return core.common_ksampler(patched, 7, 3, 5.0, "euler", "simple", positive, negative, latent)[0]["samples"]


def test_a_core_wan_model_patched_by_fantasytalking_apply_samples_the_same_with_dynamic_vram(comfy, models):
    from comfy.sd import VAE, load_diffusion_model_state_dict
    from comfy.utils import load_torch_file

    mm, nodes = comfy
    unet = load_torch_file(
        str(models["root"] / "diffusion_models" / models["unet"])
    )  # (aimdo's file reader needs a GPU)
    wan_vae = VAE(sd=load_torch_file(str(models["root"] / "vae" / models["vae"])))
    samples = {}
    for mode in VRAM_MODES:
        with vram(mode):
            samples[mode] = sample_wan(nodes, wan_vae, load_diffusion_model_state_dict(dict(unet)), models)
        mm.unload_all_models()
    assert samples["static"].shape == (1, 16, 7, 8, 8) and samples["static"].abs().max() > 0
    assert all(torch.equal(samples[mode], samples["static"]) for mode in VRAM_MODES)
