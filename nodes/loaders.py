"""Loader nodes: RAP model (DiT), VAE and audio encoder, from `models/rap/` or built in; and
FantasyTalking's audio weights for core Wan 2.1 models."""

from __future__ import annotations

from functools import partial

import comfy.ops
import torch
from comfy_api.latest import io

from ..rap_core.config import get_preset, preset_names
from ..rap_core.loading.builtin import builtin_dit, builtin_vae, load_audio_encoder
from ..rap_core.loading.detect import detect_preset
from ..rap_core.loading.models import load_dit, load_fantasytalking, load_vae
from ..rap_core.loading.sources import (
    FANTASYTALKING,
    FANTASYTALKING_FP16,
    FLASHHEAD_LITE_DIT,
    LTX_VIDEO_VAE,
    WAV2VEC2_BASE,
)
from ..rap_core.models.attention import ATTENTION_BACKENDS
from . import files
from .networks import WEIGHT_DTYPES, offload_device, pick_dtype, wrap
from .types import RAPAudioEncoder, RAPFantasyTalking, RAPModel, RAPVae

CATEGORY = "RAP/loaders"
DIT_FILES, VAE_FILES, ENCODER_FOLDERS = (FLASHHEAD_LITE_DIT,), (LTX_VIDEO_VAE,), (WAV2VEC2_BASE,)
FANTASYTALKING_FILES = (FANTASYTALKING, FANTASYTALKING_FP16)
WAV2VEC2_PRESET = "flashhead-lite"  # preset auto with a wav2vec2 folder: flashhead-lite's and rap-1.3b's encoder


def _preset_input() -> io.Combo.Input:
    return io.Combo.Input(
        "preset",
        options=[files.AUTO, *preset_names()],
        default=files.AUTO,
        tooltip="Architecture and defaults. auto: read from the weight file (its metadata, else its keys and shapes; "
        "built-in weights need tiny or demo). flashhead-lite (public SoulX-FlashHead-Lite weights), rap-1.3b, "
        "demo (a small model trained on synthetic cartoon faces, built in, real time on a CPU) or tiny (random "
        "weights, for trying the graph).",
    )


def _download_input() -> io.Boolean.Input:
    return io.Boolean.Input(
        "download",
        default=False,
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
                io.Combo.Input(
                    "ckpt_name",
                    options=files.file_choices(*DIT_FILES),
                    tooltip="DiT weights in models/rap/, or built-in (presets demo and tiny).",
                ),
                _preset_input(),
                io.Combo.Input(
                    "weight_dtype",
                    options=list(WEIGHT_DTYPES),
                    default="auto",
                    tooltip="auto: bf16 on a GPU that supports it, else fp16, fp32 on a CPU.",
                ),
                io.Combo.Input(
                    "attention",
                    options=list(ATTENTION_BACKENDS),
                    default="sdpa",
                    tooltip="sdpa works everywhere; flash_attn and sage need their packages and a GPU.",
                ),
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
            ckpt_name,
            preset,
            DIT_FILES,
            download,
            weight_dtype,
            "dit",
            lambda path, config, dtype: (builtin_dit if path is None else partial(load_dit, path))(
                config,
                device=offload_device(),
                dtype=dtype,
                operations=comfy.ops.manual_cast,
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
                io.Combo.Input(
                    "vae_name",
                    options=files.file_choices(*VAE_FILES),
                    tooltip="VAE weights in models/rap/, or built-in (presets demo and tiny).",
                ),
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
            vae_name,
            preset,
            VAE_FILES,
            download,
            weight_dtype,
            "vae",
            lambda path, config, dtype: (builtin_vae if path is None else partial(load_vae, path))(
                config, device=offload_device(), dtype=dtype, operations=comfy.ops.manual_cast
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
                io.Combo.Input(
                    "encoder",
                    options=files.folder_choices(*ENCODER_FOLDERS),
                    tooltip="A wav2vec2 folder (config.json, model.safetensors) in models/rap/, or built-in "
                    "(demo's mel-spectrogram encoder; tiny's random wav2vec2).",
                ),
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
        path = files.resolve(encoder, preset, ENCODER_FOLDERS, download)
        config = get_preset(WAV2VEC2_PRESET if preset == files.AUTO else preset)  # a folder is a wav2vec2
        model = load_audio_encoder(config, path, device=offload_device())
        return io.NodeOutput(wrap(model, config, torch.float32))  # demo's mel encoder has no parameters


class RAPFantasyTalkingLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RAPFantasyTalkingLoader",
            display_name="RAP FantasyTalking Loader",
            category=CATEGORY,
            description="Loads FantasyTalking's audio weights (the official fantasytalking_model.ckpt or Kijai's "
            "fantasytalking_fp16.safetensors) from models/rap/, for RAP FantasyTalking Apply.",
            inputs=[
                io.Combo.Input(
                    "weights",
                    options=files.file_choices(*FANTASYTALKING_FILES, builtin=False),
                    tooltip="FantasyTalking audio weights in models/rap/.",
                ),
                io.Combo.Input(
                    "weight_dtype",
                    options=list(WEIGHT_DTYPES),
                    default="auto",
                    tooltip="Use the Wan model's dtype; auto: bf16 on a GPU that supports it, else fp16, fp32 on a "
                    "CPU.",
                ),
                _download_input(),
            ],
            outputs=[RAPFantasyTalking.Output(display_name="fantasytalking")],
        )

    @classmethod
    def validate_inputs(cls, weights: str, download: bool) -> bool | str:
        return files.check(weights, None, FANTASYTALKING_FILES, download)

    @classmethod
    def execute(cls, weights: str, weight_dtype: str, download: bool) -> io.NodeOutput:
        path = files.resolve(weights, None, FANTASYTALKING_FILES, download)
        model = load_fantasytalking(
            path, device=offload_device(), dtype=pick_dtype(weight_dtype), operations=comfy.ops.manual_cast
        )
        return io.NodeOutput(model)


def _load(choice: str, preset: str, known, download: bool, weight_dtype: str, kind: str, build) -> io.NodeOutput:
    """A network from its weight choice (path None: the preset's built-in one) in `weight_dtype`;
    loaded layers use comfy.ops.manual_cast so ComfyUI can load them partially. Preset auto: the
    file's (rap_core.loading.detect)."""
    path = files.resolve(choice, preset, known, download)
    config, dtype = get_preset(detect_preset(path, kind) if preset == files.AUTO else preset), pick_dtype(weight_dtype)
    model = build(path, config, dtype)
    return io.NodeOutput(wrap(model, config, dtype))


LOADERS = [RAPModelLoader, RAPVAELoader, RAPAudioEncoderLoader, RAPFantasyTalkingLoader]
