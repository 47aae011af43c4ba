"""Loader nodes: RAP model (DiT), VAE and audio encoder, from `models/rap/` or built in."""

from __future__ import annotations

import comfy.ops
from comfy_api.latest import io

from ..rap_core.config import get_preset, preset_names
from ..rap_core.loading.models import load_dit, load_vae, load_wav2vec2
from ..rap_core.loading.random_weights import random_audio_encoder, random_dit, random_vae
from ..rap_core.loading.sources import FLASHHEAD_LITE_DIT, LTX_VIDEO_VAE, WAV2VEC2_BASE
from ..rap_core.models.attention import ATTENTION_BACKENDS
from . import files
from .networks import WEIGHT_DTYPES, offload_device, pick_dtype, wrap
from .types import RAPAudioEncoder, RAPModel, RAPVae

CATEGORY = "RAP/loaders"
DIT_FILES, VAE_FILES, ENCODER_FOLDERS = (FLASHHEAD_LITE_DIT,), (LTX_VIDEO_VAE,), (WAV2VEC2_BASE,)


def _preset_input() -> io.Combo.Input:
    return io.Combo.Input(
        "preset", options=preset_names(), default="flashhead-lite",
        tooltip="Architecture and defaults: flashhead-lite (public SoulX-FlashHead-Lite weights), rap-1.3b, "
        "or tiny (a small random model for trying the pipeline on a CPU).",
    )


def _download_input() -> io.Boolean.Input:
    return io.Boolean.Input(
        "download", default=False,
        tooltip="Download a missing known file from Hugging Face into models/rap/ (needs internet).",
    )


class RAPModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RAPModelLoader",
            display_name="RAP Model Loader",
            category=CATEGORY,
            description="Loads the RAP / FlashHead diffusion transformer from models/rap/.",
            inputs=[
                io.Combo.Input("ckpt_name", options=files.file_choices(*DIT_FILES), tooltip="DiT weights in models/rap/."),
                _preset_input(),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="auto",
                               tooltip="auto: bf16 on a GPU that supports it, else fp16, fp32 on a CPU."),
                io.Combo.Input("attention", options=list(ATTENTION_BACKENDS), default="sdpa",
                               tooltip="sdpa works everywhere; flash_attn and sage need their packages and a GPU."),
                _download_input(),
            ],
            outputs=[RAPModel.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, ckpt_name: str, preset: str, download: bool) -> bool | str:
        return files.check(ckpt_name, preset, DIT_FILES, download)

    @classmethod
    def execute(cls, ckpt_name: str, preset: str, weight_dtype: str, attention: str, download: bool) -> io.NodeOutput:
        return _load(
            ckpt_name, preset, DIT_FILES, download, weight_dtype,
            lambda config, dtype: random_dit(config, device=offload_device(), dtype=dtype, attention_backend=attention),
            lambda path, config, dtype: load_dit(
                path, config, device=offload_device(), dtype=dtype, operations=comfy.ops.manual_cast,
                attention_backend=attention,
            ),
        )


class RAPVAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RAPVAELoader",
            display_name="RAP VAE Loader",
            category=CATEGORY,
            description="Loads the LTX-Video VAE (32x32x8 compression) the RAP model works in.",
            inputs=[
                io.Combo.Input("vae_name", options=files.file_choices(*VAE_FILES), tooltip="VAE weights in models/rap/."),
                _preset_input(),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="auto"),
                _download_input(),
            ],
            outputs=[RAPVae.Output(display_name="vae")],
        )

    @classmethod
    def validate_inputs(cls, vae_name: str, preset: str, download: bool) -> bool | str:
        return files.check(vae_name, preset, VAE_FILES, download)

    @classmethod
    def execute(cls, vae_name: str, preset: str, weight_dtype: str, download: bool) -> io.NodeOutput:
        return _load(
            vae_name, preset, VAE_FILES, download, weight_dtype,
            lambda config, dtype: random_vae(config, device=offload_device(), dtype=dtype),
            lambda path, config, dtype: load_vae(
                path, config, device=offload_device(), dtype=dtype, operations=comfy.ops.manual_cast
            ),
        )


class RAPAudioEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RAPAudioEncoderLoader",
            display_name="RAP Audio Encoder Loader",
            category=CATEGORY,
            description="Loads the wav2vec2 speech encoder (a transformers folder in models/rap/). Runs in float32.",
            inputs=[
                io.Combo.Input("encoder", options=files.folder_choices(*ENCODER_FOLDERS),
                               tooltip="A folder with config.json and model.safetensors in models/rap/."),
                _preset_input(),
                _download_input(),
            ],
            outputs=[RAPAudioEncoder.Output(display_name="audio_encoder")],
        )

    @classmethod
    def validate_inputs(cls, encoder: str, preset: str, download: bool) -> bool | str:
        return files.check(encoder, preset, ENCODER_FOLDERS, download)

    @classmethod
    def execute(cls, encoder: str, preset: str, download: bool) -> io.NodeOutput:
        config = get_preset(preset)
        path = files.resolve(encoder, preset, ENCODER_FOLDERS, download)
        model = random_audio_encoder(config, device=offload_device()) if path is None else load_wav2vec2(path, device=offload_device())
        return io.NodeOutput(wrap(model, config, next(model.parameters()).dtype))


def _load(choice: str, preset: str, known, download: bool, weight_dtype: str, build_random, load_file) -> io.NodeOutput:
    """A network from its weight choice: the built-in random weights or the resolved file, in
    `weight_dtype`; the file's layers use comfy.ops.manual_cast so ComfyUI can load them partially."""
    config, dtype = get_preset(preset), pick_dtype(weight_dtype)
    path = files.resolve(choice, preset, known, download)
    model = build_random(config, dtype) if path is None else load_file(path, config, dtype)
    return io.NodeOutput(wrap(model, config, dtype))


LOADERS = [RAPModelLoader, RAPVAELoader, RAPAudioEncoderLoader]
