"""RAP Decode: RAP_LATENTS -> IMAGE frames, their frame rate and their stretch of the audio."""

from __future__ import annotations

import comfy.utils
import torch
from comfy_api.latest import io

from ..rap_core.media.normalise import audio_for_frames
from ..rap_core.talk import chunk_frames, decode_chunk
from .networks import load
from .sampler import frame_preview
from .types import RAPLatents, RAPVae, TalkLatents


class RAPDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RAPDecode",
            display_name="RAP Decode",
            category="RAP",
            description="Decodes a sampler's chunks to video frames. `audio` is the matching stretch of the "
            "input speech and `fps` the frame rate: wire both into Create Video.",
            inputs=[RAPVae.Input("vae"), RAPLatents.Input("latents")],
            outputs=[
                io.Image.Output(display_name="images"),
                io.Float.Output(display_name="fps"),
                io.Audio.Output(display_name="audio"),
            ],
        )

    @classmethod
    def execute(cls, vae, latents: TalkLatents) -> io.NodeOutput:
        load(vae)
        talk, device, dtype = latents.talk, vae.device, vae.dtype
        bar = comfy.utils.ProgressBar(len(latents.latents))
        frames = []
        for i, latent in enumerate(latents.latents):
            if latents.decoded:
                video = latents.decoded[i].to(device)
            else:
                video = decode_chunk(
                    vae.model, latent.to(device, dtype), latents.reference, talk.sampling.color_correction
                )  # [1, 3, T_c, H, W]
            frames.append(chunk_frames(talk.chunks[latents.first_chunk + i], video))
            bar.update_absolute(i + 1, preview=frame_preview(video[0, :, -1]))
        first, end = latents.frame_range
        sound = latents.audio
        fps = sound.config.fps
        waveform = audio_for_frames(sound.waveform, sound.sample_rate, fps, first, end)  # [C, S']
        audio = {"waveform": waveform[None], "sample_rate": sound.sample_rate}  # [1, C, S']
        return io.NodeOutput(torch.cat(frames), float(fps), audio)
