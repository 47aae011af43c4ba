"""Encoder nodes: speech (core AUDIO) -> RAP_AUDIO_EMBEDS, portrait (IMAGE) -> RAP_REFERENCE."""

from __future__ import annotations

from dataclasses import replace

import comfy.model_management as mm
import comfy.utils
from comfy_api.latest import io
from einops import rearrange

from ..rap_core.audio_context import AUDIO_CONTEXTS, held_audio
from ..rap_core.framing import POLICIES, frame_for
from ..rap_core.media.normalise import audio_to_mono
from ..rap_core.talk import encode_reference
from .networks import load
from .types import AudioEmbeds, RAPAudioEmbeds, RAPAudioEncoder, RAPFraming, RAPReference, RAPVae

CATEGORY = "RAP"


class RAPAudioEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RAPAudioEncode",
            display_name="RAP Audio Encode",
            category=CATEGORY,
            description="wav2vec2 features of the speech, one per video frame. The video gets "
            "ceil(seconds x 25) frames unless `frames` overrides it (extra frames are silent, fewer cut the talk).",
            inputs=[
                RAPAudioEncoder.Input("audio_encoder"),
                io.Audio.Input("audio", tooltip="Speech; any sample rate and channel count (mixed down to mono)."),
                io.Int.Input(
                    "frames",
                    default=0,
                    min=0,
                    max=1_000_000,
                    tooltip="Video frames to make; 0 follows the audio's length.",
                ),
                io.Combo.Input(
                    "audio_context",
                    options=["preset", *AUDIO_CONTEXTS],
                    default="preset",
                    optional=True,
                    tooltip="What speech wav2vec2 hears for each chunk. preset: the model's own (flashhead-lite: "
                    "reference-stream). reference-stream: as SoulX-FlashHead streams, the 8 s before each "
                    "chunk's end; reference-once: the whole file at once, as its once mode; lookahead: ours, "
                    "the same features for any chunking, each frame hearing 8 frames ahead. The reference "
                    "modes fix the sampler's chunk_latents and continuity_n to the preset's.",
                ),
            ],
            outputs=[RAPAudioEmbeds.Output(display_name="audio_embeds"), io.Int.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, audio_encoder, audio: dict, frames: int, audio_context: str = "preset") -> io.NodeOutput:
        config = audio_encoder.config
        sampling = config.sampling
        if audio_context != "preset":
            sampling = replace(sampling, audio_context=audio_context)
        waveform = audio["waveform"][0]  # [C, S] of a [B, C, S] batch
        mono = audio_to_mono(waveform, audio["sample_rate"], config.audio.sample_rate)  # [S']
        load(audio_encoder)
        bar = comfy.utils.ProgressBar(1)
        features = held_audio(
            audio_encoder.model,
            mono,
            config,
            sampling,
            frames or None,
            progress=lambda done, total: bar.update_absolute(done, total),
        )
        embeds = AudioEmbeds(
            features.to(mm.intermediate_device()), waveform.float().cpu(), int(audio["sample_rate"]), config
        )
        return io.NodeOutput(embeds, embeds.num_frames)


class RAPReferenceEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RAPReferenceEncode",
            display_name="RAP Reference Encode",
            category=CATEGORY,
            description="The portrait the video animates, framed from the photo: around the detected face, or the "
            "photo's centre. `cropped` is what the model sees; wire `framing` into RAP Paste Back to put the "
            "animated frames back into the photo. Transparency becomes white. Of a batch, the first image is used.",
            inputs=[
                RAPVae.Input("vae"),
                io.Image.Input("image"),
                io.Combo.Input(
                    "framing",
                    options=["preset", *POLICIES],
                    default="preset",
                    optional=True,
                    tooltip="face: the detected face, framed as the model's training portraits are (the "
                    "largest face; the centre if none is found). centre: the photo scaled to cover the "
                    "model's size, centre-cropped. preset: the model's own (flashhead-lite: centre, as its "
                    "authors run it; the others: face).",
                ),
            ],
            outputs=[
                RAPReference.Output(display_name="reference"),
                io.Image.Output(display_name="cropped"),
                RAPFraming.Output(display_name="framing"),
            ],
        )

    @classmethod
    def execute(cls, vae, image, framing: str = "preset") -> io.NodeOutput:
        config = vae.config
        framed = frame_for(config, image, None if framing == "preset" else framing)
        picture = framed.picture()  # [3, H, W] in [-1, 1]
        load(vae)
        reference = encode_reference(
            vae.model, picture.to(vae.device, vae.dtype), config.sampling.chunk_latents, face_box=framed.face_box()
        )
        cropped = rearrange(framed.crop(), "h w c -> 1 h w c")  # [1, H, W, 3]
        return io.NodeOutput(reference.to(mm.intermediate_device()), cropped, framed)


ENCODERS = [RAPAudioEncode, RAPReferenceEncode]
