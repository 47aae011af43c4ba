"""RAP Sampler: audio embeds + reference -> RAP_LATENTS, chunk by chunk, optionally continuing an
earlier sampler's talk so a long talk can be split over several nodes without a seam."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import comfy.model_management as mm
import comfy.utils
from comfy.cli_args import args
from comfy_api.latest import io
from PIL import Image

from ..rap_core.config import SamplingConfig, get_preset, preset_names
from ..rap_core.errors import RAPInputError
from ..rap_core.sampling.continuity import CONTINUITIES, continuity_mode, overlap_latents
from ..rap_core.sampling.steps import STEPPERS
from ..rap_core.talk import Reference, Talk, advance
from ..rap_core.timing import MAX_CHUNK_LATENTS
from .networks import load
from .types import RAPAudioEmbeds, RAPLatents, RAPModel, RAPReference, RAPVae, TalkLatents

PRESET = "preset"  # a combo's first option: the value of the model's preset


def _by_preset(setting: Callable[[SamplingConfig], object]) -> str:
    """'demo 4, flashhead-lite 4, ...': one sampling setting of every preset, for a tooltip."""
    values = {name: setting(get_preset(name).sampling) for name in preset_names()}
    return ", ".join(
        f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}" for name, value in values.items()
    )


class RAPSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RAPSampler",
            display_name="RAP Sampler",
            category="RAP",
            description="Generates the talking-portrait latents chunk by chunk. Connect `previous` to "
            "continue the talk of an earlier RAP Sampler (same audio embeds) exactly where it stopped. "
            "Widgets left at 0, -1 or preset take the value of the model's preset.",
            inputs=[
                RAPModel.Input("model"),
                RAPVae.Input("vae"),
                RAPAudioEmbeds.Input("audio_embeds"),
                RAPReference.Input("reference"),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=True,
                    tooltip="Noise seed. A continuing sampler carries on the earlier one's noise instead.",
                ),
                io.Int.Input(
                    "steps",
                    default=0,
                    min=0,
                    max=100,
                    tooltip=f"Denoising steps per chunk. 0: the model's preset ({_by_preset(lambda s: s.steps)}).",
                ),
                io.Float.Input(
                    "cfg",
                    default=0.0,
                    min=0.0,
                    max=20.0,
                    step=0.1,
                    tooltip="Audio classifier-free guidance, 1 or more; 1 turns it off (one model pass per "
                    f"step). 0: the model's preset ({_by_preset(lambda s: s.cfg_scale)}).",
                ),
                io.Float.Input(
                    "shift",
                    default=0.0,
                    min=0.0,
                    max=20.0,
                    step=0.1,
                    tooltip=f"Flow-matching schedule shift. 0: the model's preset ({_by_preset(lambda s: s.shift)}).",
                ),
                io.Combo.Input(
                    "sampler",
                    options=[PRESET, *STEPPERS],
                    default=PRESET,
                    tooltip="renoise: FlashHead's distilled update; euler: the ODE step RAP uses. "
                    f"preset: the model's ({_by_preset(lambda s: s.sampler)}).",
                ),
                io.Combo.Input(
                    "continuity",
                    options=[PRESET, *CONTINUITIES],
                    default=PRESET,
                    tooltip="How a chunk continues the previous one: FlashHead's clean motion frames, "
                    "RAP's step-wise latent inheritance, or independent chunks. "
                    f"preset: the model's ({_by_preset(lambda s: s.continuity)}).",
                ),
                io.Int.Input(
                    "continuity_n",
                    default=0,
                    min=0,
                    max=MAX_CHUNK_LATENTS - 1,
                    tooltip="Latent frames a chunk takes over from the previous one. 0: the model's preset for "
                    f"the continuity used (with each preset's own: {_by_preset(overlap_latents)}).",
                ),
                io.Int.Input(
                    "chunk_latents",
                    default=0,
                    min=0,
                    max=MAX_CHUNK_LATENTS,
                    tooltip="Latent frames per chunk (5 -> 33 video frames with the LTX VAE). "
                    f"0: the model's preset ({_by_preset(lambda s: s.chunk_latents)}).",
                ),
                io.Combo.Input(
                    "audio_attention",
                    options=["model", "window", "full", "hybrid"],
                    default="model",
                    tooltip="model: as the checkpoint was trained, with its own alphas. hybrid blends "
                    "window and full attention by depth with alpha_w and alpha_delta.",
                ),
                io.Float.Input(
                    "alpha_w",
                    default=1.0,
                    min=-4.0,
                    max=4.0,
                    step=0.05,
                    tooltip="audio_attention hybrid only: window weight of block i = "
                    "clamp(alpha_delta + alpha_w * i/(L-1), 0, 1).",
                ),
                io.Float.Input(
                    "alpha_delta",
                    default=0.0,
                    min=-4.0,
                    max=4.0,
                    step=0.05,
                    tooltip="audio_attention hybrid only, see alpha_w.",
                ),
                io.Float.Input(
                    "color_correction",
                    default=-1.0,
                    min=-1.0,
                    max=1.0,
                    step=0.05,
                    tooltip="Match the colours of decoded frames to the portrait, 0 (off) to 1. "
                    f"-1: the model's preset ({_by_preset(lambda s: s.color_correction)}).",
                ),
                io.Float.Input(
                    "expression",
                    default=0.5,
                    min=0.0,
                    max=1.0,
                    step=0.05,
                    tooltip="Mouth/expression intensity (0.5 = natural). Models with motion-intensity "
                    "controls only (the demo model); others need 0.5.",
                ),
                io.Float.Input(
                    "head_motion",
                    default=0.5,
                    min=0.0,
                    max=1.0,
                    step=0.05,
                    tooltip="Head motion intensity (0.5 = natural). Models with motion-intensity "
                    "controls only (the demo model); others need 0.5.",
                ),
                io.Int.Input(
                    "frames",
                    default=0,
                    min=0,
                    max=1_000_000,
                    tooltip="Stop after at least this many new frames (at a chunk boundary); 0 = to the end.",
                ),
                RAPLatents.Input("previous", optional=True, tooltip="An earlier RAP Sampler's latents to continue."),
            ],
            outputs=[RAPLatents.Output(display_name="latents")],
        )

    @classmethod
    def execute(
        cls,
        model,
        vae,
        audio_embeds,
        reference: Reference,
        seed: int,
        frames: int,
        previous: TalkLatents | None = None,
        **widgets,
    ) -> io.NodeOutput:
        settings = sampling_settings(model.config.sampling, audio_embeds.features.context, **widgets)
        _check_compatible(model, vae, audio_embeds, previous)
        load(model, vae)
        if previous is None:
            on_vae = reference.to(vae.device, vae.dtype)
            talk, reference = Talk.start(
                settings,
                model.model,
                vae.model,
                on_vae.image[0, :, 0],
                seed,
                audio_embeds.num_frames,
                audio_embeds.features.leads,
                on_vae,
            )
        else:  # the earlier sampler's talk and reference (a posterior sample is drawn once per talk)
            talk, reference = _continue(previous, settings)
        on_model, store = reference.to(model.device, model.dtype), mm.intermediate_device()
        chunks, steps = talk.chunks_for(frames), settings.steps
        first_chunk = talk.next_chunk
        bar = comfy.utils.ProgressBar(len(chunks) * steps)
        latents, decoded = [], []
        for done in range(len(chunks)):

            def progress(chunk: int, step: int, x, base=done * steps) -> None:
                mm.throw_exception_if_processing_interrupted()
                bar.update_absolute(base + step)

            latent, video = advance(talk, model.model, vae.model, audio_embeds.features, on_model, False, progress)
            preview = None
            if video is not None:  # motion-frame continuity decoded the chunk: keep it for RAP Decode
                decoded.append(video.to(store))
                preview = frame_preview(video[0, :, -1])
            latents.append(latent.to(store))
            bar.update_absolute((done + 1) * steps, preview=preview)
        return io.NodeOutput(TalkLatents(talk, first_chunk, latents, decoded, reference.to(store), audio_embeds))


def sampling_settings(
    preset: SamplingConfig,
    audio_context: str,
    *,
    steps: int,
    cfg: float,
    shift: float,
    sampler: str,
    continuity: str,
    continuity_n: int,
    chunk_latents: int,
    audio_attention: str,
    alpha_w: float,
    alpha_delta: float,
    color_correction: float,
    expression: float,
    head_motion: float,
) -> SamplingConfig:
    """The sampler's widgets over the model's preset: 0 (color_correction -1) and "preset" keep the preset's
    value; alpha_w and alpha_delta count with hybrid audio attention only. The audio context is the embeds'."""
    if 0 < cfg < 1:
        raise RAPInputError(
            f"cfg {cfg:g} is below 1: set 1 (no guidance) or more, or 0 for the model's preset ({preset.cfg_scale:g})."
        )
    if -1 < color_correction < 0:
        raise RAPInputError(
            f"color_correction {color_correction:g} is below 0: set 0 (off) to 1, or -1 for the "
            f"model's preset ({preset.color_correction:g})."
        )
    hybrid = audio_attention == "hybrid"
    chosen = dict(
        steps=steps or None,
        cfg_scale=cfg or None,
        shift=shift or None,
        sampler=None if sampler == PRESET else sampler,
        continuity=None if continuity == PRESET else continuity,
        chunk_latents=chunk_latents or None,
        color_correction=None if color_correction == -1 else color_correction,
        audio_mode=None if audio_attention == "model" else audio_attention,
        alpha_w=alpha_w if hybrid else None,
        alpha_delta=alpha_delta if hybrid else None,
    )  # None: the preset's
    overlap = continuity_mode(chosen["continuity"] or preset.continuity).overlap_field
    if continuity_n and overlap is not None:
        chosen[overlap] = continuity_n
    given = {name: value for name, value in chosen.items() if value is not None}
    return dataclasses.replace(
        preset, audio_context=audio_context, expression=expression, head_motion=head_motion, **given
    )


def _check_compatible(model, vae, audio_embeds, previous: TalkLatents | None) -> None:
    if model.config.vae != vae.config.vae or model.config.audio != audio_embeds.config.audio:
        raise RAPInputError(
            f"The loaders were set for presets that do not fit together: RAP Model Loader '{model.config.name}', "
            f"RAP VAE Loader '{vae.config.name}', RAP Audio Encoder Loader '{audio_embeds.config.name}' (through RAP "
            f"Audio Encode). Set all three to '{model.config.name}', or to auto, which reads each file's preset."
        )
    if previous is not None and previous.audio is not audio_embeds:
        raise RAPInputError(
            "`previous` comes from a sampler fed with other audio embeds; a continued talk must use the same "
            "RAP Audio Encode output as the sampler it continues."
        )


def _continue(previous: TalkLatents, settings: SamplingConfig) -> tuple[Talk, Reference]:
    """A fork of the earlier sampler's talk, going on with `settings`, and its reference."""
    if previous.talk.done:
        raise RAPInputError(
            "The earlier sampler already reached the end of the audio, so there is nothing left to continue; "
            "remove this sampler, or give the earlier one a `frames` limit."
        )
    return previous.talk.fork(settings), previous.reference


def frame_preview(frame) -> tuple[str, Image.Image, int]:
    """frame [3, H, W] in [-1, 1] -> a ProgressBar preview at the frame's own size (ComfyUI scales a preview
    to fit its third item, up as well as down; --preview-size caps it)."""
    pixels = ((frame.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()  # [H, W, 3]
    return "JPEG", Image.fromarray(pixels), min(max(pixels.shape[:2]), args.preview_size)
