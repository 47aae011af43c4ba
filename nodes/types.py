"""The pack's socket types and the values that travel along them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from comfy.model_patcher import ModelPatcher
from comfy_api.latest import io

from ..rap_core.audio_context import OnceAudio, StreamWindows
from ..rap_core.audio_features import EncodedAudio
from ..rap_core.config import RAPConfig
from ..rap_core.talk import Reference, Talk

RAPModel = io.Custom("RAP_MODEL")
RAPVae = io.Custom("RAP_VAE")
RAPAudioEncoder = io.Custom("RAP_AUDIO_ENCODER")
RAPAudioEmbeds = io.Custom("RAP_AUDIO_EMBEDS")
RAPReference = io.Custom("RAP_REFERENCE")
RAPLatents = io.Custom("RAP_LATENTS")
RAPFraming = io.Custom("RAP_FRAMING")  # a rap_core.framing.Framing: where the portrait came from, to paste back
RAPFantasyTalking = io.Custom("RAP_FANTASYTALKING")  # a rap_core.models.fantasytalking.FantasyTalkingAudio


@dataclass(frozen=True)
class Network:
    """A RAP network in ComfyUI's care (RAP_MODEL, RAP_VAE, RAP_AUDIO_ENCODER)."""

    patcher: ModelPatcher
    config: RAPConfig  # the preset it was loaded for
    dtype: torch.dtype  # weights and compute

    @property
    def model(self) -> torch.nn.Module:
        return self.patcher.model

    @property
    def device(self) -> torch.device:
        return self.patcher.load_device


@dataclass(frozen=True)
class AudioEmbeds:
    """RAP_AUDIO_EMBEDS: a talk's audio features and the sound they came from."""

    features: EncodedAudio | StreamWindows | OnceAudio  # audio_context.held_audio: windows(start, end), leads
    waveform: torch.Tensor  # [C, S] the input AUDIO's first item, at its own rate
    sample_rate: int
    config: RAPConfig  # preset of the encoder (fps, audio windows)

    @property
    def num_frames(self) -> int:
        return self.features.num_frames


@dataclass(frozen=True)
class TalkLatents:
    """RAP_LATENTS: the chunks one sampler made, and the talk's state after them."""

    talk: Talk  # never mutated: a later sampler continues from a fork of it
    first_chunk: int  # index in talk.chunks of latents[0]
    latents: list[torch.Tensor]  # per chunk [1, C, K, h, w] on the intermediate device
    decoded: list[torch.Tensor]  # per chunk [1, 3, T_c, H, W] when the sampler had to decode (motion frames)
    reference: Reference
    audio: AudioEmbeds

    @property
    def frame_range(self) -> tuple[int, int]:
        """Video frames [first, end) of the talk these chunks add."""
        chunks = self.talk.chunks[self.first_chunk : self.first_chunk + len(self.latents)]
        return chunks[0].start + chunks[0].emit_from, chunks[-1].start + chunks[-1].emit_to
