"""FantasyTalking's audio branch on ComfyUI's own Wan 2.1 model, through the model patcher only.

A clone of the MODEL gets:
- an object patch per block, `diffusion_model.blocks.{i}.cross_attn` -> AudioCrossAttention (the
  block's cross-attention plus that block's audio attention), so the shared model is never edited
  and ComfyUI loads, offloads and unpatches the audio weights with the model it belongs to;
- an APPLY_MODEL wrapper that hands every call its latent frames' audio windows (through
  transformer_options) and says which batch rows hear them;
- a pre-CFG function for audio guidance: inside the step range it runs the positive prompt once
  more without audio and mixes uncond + cfg (no-audio - uncond) + audio_cfg (audio - no-audio),
  the release's three passes, with the unconditional rows silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import comfy.model_management as mm
import comfy.samplers
import torch
from comfy.model_patcher import ModelPatcher
from comfy.patcher_extension import WrappersMP

from ..rap_core.errors import RAPInputError
from ..rap_core.models.fantasytalking import AudioCrossAttention, AudioFrames, FantasyTalkingAudio, latent_windows

KEY = "rap_fantasytalking"  # the wrapper's key, and where a call's AudioFrames sit in transformer_options
SILENT = "rap_fantasytalking_silent"  # transformer_options flag of the pre-CFG's no-audio pass
UNCOND = 1  # comfy.samplers' index of the negative prompt in cond_or_uncond


@dataclass
class WanAudio:
    """One talk's audio for one patched model, and how it is applied."""

    tokens: torch.Tensor  # [L, 2048] projected audio tokens of the whole talk
    per_frame: float  # audio tokens per video frame
    scale: float  # audio_scale: the audio attention's weight
    audio_cfg: float  # audio guidance scale; 1 turns it off
    start: float  # the guided part of the schedule, as fractions of it
    end: float
    _windows: dict = field(default_factory=dict)  # latent frames -> (windows [F, W, 2048], present [F, W])

    def __deepcopy__(self, memo) -> WanAudio:
        return self  # read-only: every clone of the MODEL (ModelPatcher.clone deep-copies model_options) shares it

    def guided(self, model_sampling, sigma: torch.Tensor) -> bool:
        """Whether audio guidance applies at noise level `sigma` (the release's three-pass CFG)."""
        if self.scale == 0 or self.audio_cfg == 1:
            return False
        level = float(sigma.flatten()[0])
        return model_sampling.percent_to_sigma(self.end) <= level <= model_sampling.percent_to_sigma(self.start)

    def frames(self, latent_frames: int, heard: list[bool], device, dtype) -> AudioFrames:
        """The AudioFrames of a call over `latent_frames` latent frames whose batch rows hear the
        audio where `heard` is true."""
        if latent_frames not in self._windows:
            self._windows[latent_frames] = latent_windows(self.tokens, latent_frames, self.per_frame)
        windows, present = self._windows[latent_frames]
        row_scale = torch.tensor([self.scale if row else 0.0 for row in heard], device=device, dtype=dtype)
        return AudioFrames(windows.to(device, dtype), present.to(device), row_scale)

    def apply_model(self, executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
        """APPLY_MODEL wrapper: x [B, C, F, H, W] at noise level t. Rows of the negative prompt are
        silent while audio guidance applies, and every row in the guidance's no-audio pass."""
        if self.scale == 0:
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        chunks = transformer_options.get("cond_or_uncond", [0])
        silent_uncond = self.guided(executor.class_obj.model_sampling, t)
        silent_all = transformer_options.get(SILENT, False)
        heard = [
            not silent_all and not (silent_uncond and chunk == UNCOND)
            for chunk in chunks
            for _ in range(x.shape[0] // len(chunks))
        ]
        frames = self.frames(x.shape[2], heard, x.device, x.dtype)
        return executor(x, t, c_concat, c_crossattn, control, {**transformer_options, KEY: frames}, **kwargs)

    def pre_cfg(self, args: dict) -> list:
        """sampler_pre_cfg_function: the positive prediction becomes no-audio + audio_cfg / cond_scale x
        (audio - no-audio), so ComfyUI's CFG gives the release's mix."""
        out, cond_scale = args["conds_out"], args["cond_scale"]  # cond_scale: the prompt's CFG scale
        if cond_scale == 0 or not self.guided(args["model"].model_sampling, args["sigma"]):
            return out
        options = args["model_options"]
        quiet_options = {**options, "transformer_options": {**options["transformer_options"], SILENT: True}}
        (quiet,) = comfy.samplers.calc_cond_batch(
            args["model"], [args["conds"][0]], args["input"], args["timestep"], quiet_options
        )
        return [quiet + (out[0] - quiet) * (self.audio_cfg / cond_scale), *out[1:]]


def patch_wan(model: ModelPatcher, audio_weights: FantasyTalkingAudio, audio: WanAudio) -> ModelPatcher:
    """A clone of the Wan MODEL `model` with the audio branch (see the module docstring)."""
    wan = model.get_model_object("diffusion_model")
    blocks = getattr(wan, "blocks", None)
    if blocks is None or getattr(wan, "dim", None) != audio_weights.dim or len(blocks) != len(audio_weights.blocks):
        got = f"{len(blocks)} blocks of width {getattr(wan, 'dim', '?')}" if blocks is not None else type(wan).__name__
        raise RAPInputError(
            f"These FantasyTalking weights fit a Wan 2.1 model with {len(audio_weights.blocks)} blocks of width "
            f"{audio_weights.dim} (Wan2.1-I2V-14B-720P: 40 x 5120); the MODEL has {got}. Load the Wan 2.1 I2V 14B "
            "model with a core loader (Load Diffusion Model)."
        )
    patched = model.clone()
    for index, kv in enumerate(audio_weights.blocks):
        name = f"diffusion_model.blocks.{index}.cross_attn"
        cross_attention = patched.get_model_object(name)
        if isinstance(cross_attention, AudioCrossAttention):
            raise RAPInputError("This MODEL already has FantasyTalking audio; apply it once.")
        patched.add_object_patch(name, AudioCrossAttention(cross_attention, kv, KEY))
    patched.size = model.model_size() + mm.module_size(audio_weights.blocks)  # ComfyUI budgets the audio weights too
    patched.add_wrapper_with_key(WrappersMP.APPLY_MODEL, KEY, audio.apply_model)
    patched.set_model_sampler_pre_cfg_function(audio.pre_cfg)
    return patched
