"""RAPPipeline: portrait + speech -> talking-portrait frames, generated chunk by chunk.

The photo is framed first (framing.py: around the detected face, or its centre). Per chunk (clip
of 1 + 8(K-1) video frames, see timing.plan_chunks): audio windows of the clip's frames -> audio
tokens; noise -> flow-matching steps with the DiT (audio CFG, continuity prefix written before
every step) -> VAE decode -> optional Lab colour match -> the new frames (the steps live in
talk.py, shared with the ComfyUI nodes). Memory is bounded by one chunk whatever the audio length;
`stream` yields frames as decoded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import torch

from .audio_context import chunk_audio, leads
from .config import RAPConfig, SamplingConfig, get_preset
from .errors import RAPInputError
from .framing import Framing, frame_for
from .loading.builtin import builtin_dit, builtin_vae, has_builtin, load_audio_encoder
from .loading.models import load_dit, load_vae
from .media.normalise import audio_to_mono
from .models.audio import SpeechEncoder
from .models.dit import RAPTransformer
from .models.vae import VideoVAE
from .sampling.continuity import overlap_latents
from .talk import StepCallback, Talk, advance, chunk_frames
from .timing import Chunk, plan_chunks


class RAPPipeline:
    def __init__(
        self,
        config: RAPConfig,
        dit: RAPTransformer,
        vae: VideoVAE,
        audio_encoder: SpeechEncoder,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.config, self.dit, self.vae, self.audio_encoder = config, dit, vae, audio_encoder
        self.device, self.dtype = torch.device(device), dtype

    @classmethod
    def from_preset(
        cls,
        name: str,
        dit: str | os.PathLike | None = None,
        vae: str | os.PathLike | None = None,
        audio_encoder: str | os.PathLike | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        attention_backend: str = "sdpa",
    ) -> RAPPipeline:
        """Build a preset's networks: `dit` and `vae` (.safetensors) and `audio_encoder` (a wav2vec2
        folder) where given, else the preset's built-in ones (`tiny`: random, `demo`: shipped trained
        weights; a mel audio encoder needs no weights)."""
        config = get_preset(name)
        missing = [arg for arg, path in (("dit", dit), ("vae", vae)) if path is None and not has_builtin(name)]
        if audio_encoder is None and config.audio.encoder == "wav2vec2" and not has_builtin(name):
            missing.append("audio_encoder")
        if missing:
            raise RAPInputError(
                f"Preset '{name}' needs weight files: pass {', '.join(missing)} (paths to the DiT and VAE "
                "safetensors and the wav2vec2 folder; see README, 'models/rap/')."
            )
        networks = (
            builtin_dit(config, device=device, dtype=dtype, attention_backend=attention_backend)
            if dit is None
            else load_dit(dit, config, device=device, dtype=dtype, attention_backend=attention_backend),
            builtin_vae(config, device=device, dtype=dtype)
            if vae is None
            else load_vae(vae, config, device=device, dtype=dtype),
            load_audio_encoder(config, audio_encoder, device=device),
        )
        return cls(config, *networks, device=device, dtype=dtype)

    def sampling(self, **options) -> SamplingConfig:
        """The preset's sampling settings with `options` (SamplingConfig fields) applied."""
        fields = {f.name for f in dataclasses.fields(SamplingConfig)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise RAPInputError(f"Unknown option(s) {unknown}; choose from {sorted(fields)}.")
        sampling = dataclasses.replace(self.config.sampling, **options)
        overlap_latents(sampling)  # rejects an unknown continuity mode
        leads(sampling.audio_context)  # and an unknown audio context
        return sampling

    def chunk_plan(self, num_frames: int, **options) -> list[Chunk]:
        """The chunks a clip of `num_frames` video frames is generated in (for progress bars)."""
        sampling = self.sampling(**options)
        return plan_chunks(
            num_frames,
            sampling.chunk_latents,
            overlap_latents(sampling),
            self.vae.temporal_stride,
            leads(sampling.audio_context),
        )

    def frame(self, image, framing=None) -> Framing:
        """The photo framed for this model (framing.frame_portrait): `framing` "face", "centre", a box
        (top, bottom, left, right) in photo pixels, or None for the preset's (RAPConfig.framing)."""
        return frame_for(self.config, image, framing)

    @torch.no_grad()
    def stream(
        self,
        image,
        audio,
        sample_rate: int,
        seed: int = 0,
        progress: StepCallback | None = None,
        face_box: tuple[float, float, float, float] | None = None,
        framing=None,
        paste_back: bool = False,
        **options,
    ) -> Iterator[torch.Tensor]:
        """Yield the video as chunks of frames [n, H, W, 3] float32 in 0..1 on the CPU, in order,
        exactly ceil(seconds * fps) frames in all.

        framing: which part of the photo the model animates (see `frame`; None: the preset's, "face" for
        all but flashhead-lite). paste_back: put each frame back into the photo (feathered seam), so
        frames come at the photo's size. face_box (top, bottom, left, right fractions of the framed
        portrait): where the identity branch, if the DiT has one, finds the face; None: the detected
        face, else face.CENTRE_FACE. `options` override the preset's SamplingConfig (audio_context among
        them: lookahead, reference-stream or reference-once, see audio_context.py)."""
        sampling = self.sampling(**options)
        framed = self.frame(image, framing)
        mono = audio_to_mono(audio, sample_rate, self.config.audio.sample_rate)
        features = chunk_audio(self.audio_encoder, mono, self.config, sampling)
        picture = framed.picture().to(self.device, self.dtype)  # [3, H, W]
        talk, reference = Talk.start(
            sampling,
            self.dit,
            self.vae,
            picture,
            seed,
            features.num_frames,
            features.leads,
            face_box=framed.face_box() if face_box is None else face_box,
        )
        while not talk.done:
            chunk = talk.chunks[talk.next_chunk]
            _, video = advance(talk, self.dit, self.vae, features, reference, decode=True, progress=progress)
            frames = chunk_frames(chunk, video)  # [n, H, W, 3]
            yield framed.paste(frames) if paste_back else frames

    def generate(
        self,
        image,
        audio,
        sample_rate: int,
        seed: int = 0,
        progress: StepCallback | None = None,
        face_box: tuple[float, float, float, float] | None = None,
        framing=None,
        paste_back: bool = False,
        **options,
    ) -> torch.Tensor:
        """The whole video: frames [N, H, W, 3] float32 in 0..1 (at the photo's size with `paste_back`),
        N = ceil(audio seconds * fps); see `stream`."""
        frames = self.stream(
            image,
            audio,
            sample_rate,
            seed=seed,
            progress=progress,
            face_box=face_box,
            framing=framing,
            paste_back=paste_back,
            **options,
        )
        return torch.cat(list(frames))
