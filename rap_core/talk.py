"""A talk: one portrait animated along one speech track, generated a chunk at a time.

`Talk` holds everything that carries from one chunk to the next: the chunk plan over the whole
track, the continuity mode's state and the noise generator; `Talk.start` begins one as RAPPipeline,
the ComfyUI sampler and a live talk all do. Generation can stop after any chunk and go on later
(another call, another ComfyUI sampler node) and give exactly the frames of one uninterrupted run.
The functions take the networks as arguments, so `RAPPipeline` and the ComfyUI nodes (whose
networks ComfyUI's model manager places) share this one implementation.

Per chunk (`advance`): `sample_chunk` (audio tokens, noise, denoising with the continuity prefix)
-> `decode_chunk` (VAE, colour match) -> `hand_over` (what the next chunk inherits); then
`chunk_frames` gives the chunk's new frames.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator, Sequence

import torch
from einops import rearrange, repeat

from .config import AudioConfig, SamplingConfig
from .errors import RAPInputError
from .face import encode_face
from .models.dit import RAPTransformer
from .models.intensity import NATURAL
from .models.vae import VideoVAE
from .sampling.color import match_colors
from .sampling.continuity import continuity_mode, overlap_latents
from .sampling.guidance import audio_guidance
from .sampling.loop import denoise
from .sampling.schedule import flow_timesteps
from .sampling.steps import stepper
from .timing import Chunk, EndlessChunks, covered_video_frames, plan_chunks

# progress(chunk_index, step_index, latent the model is about to see)
StepCallback = Callable[[int, int, torch.Tensor], None]

# SamplingConfig fields that shape the chunks and what they inherit: a continued talk keeps them.
STRUCTURE_FIELDS = (
    "audio_context",
    "steps",
    "shift",
    "schedule",
    "timesteps",
    "sampler",
    "continuity",
    "inherit_latents",
    "motion_latents",
    "chunk_latents",
    "sample_posterior",
)


@dataclasses.dataclass(frozen=True)
class Reference:
    """The portrait as the DiT sees it."""

    image: torch.Tensor  # [1, 3, 1, H, W] in [-1, 1]
    latent: torch.Tensor  # [1, C, K, h, w]: the still image held for a K-latent clip, encoded
    face: torch.Tensor | None = None  # [1, C, 1, h, w]: the face crop, encoded (face.py), for the identity branch
    face_box: tuple[float, float, float, float] | None = None  # where the face is (face.py; None: CENTRE_FACE)

    @property
    def chunk_latents(self) -> int:
        return self.latent.shape[2]

    def to(self, device=None, dtype=None) -> Reference:
        """Every tensor of the reference on `device` and in `dtype`."""
        face = None if self.face is None else self.face.to(device, dtype)
        return dataclasses.replace(
            self, image=self.image.to(device, dtype), latent=self.latent.to(device, dtype), face=face
        )


@torch.no_grad()
def encode_reference(
    vae: VideoVAE,
    picture: torch.Tensor,
    chunk_latents: int,
    generator: torch.Generator | None = None,
    face_box: tuple[float, float, float, float] | None = None,
) -> Reference:
    """picture [3, H, W] in [-1, 1] (media.normalise.prepare_image), on the VAE's device and dtype. With a
    `generator`, the latent is a posterior sample drawn from it (FlashHead's); else the mean.
    face_box: where the face is on the picture (fractions, face.py), kept for the identity branch."""
    clip = covered_video_frames(chunk_latents, vae.temporal_stride)
    still = repeat(picture, "c h w -> 1 c t h w", t=clip)  # [1, 3, T_c, H, W]
    latent = vae.encode(still, sample=generator is not None, generator=generator)
    return Reference(still[:, :, :1], latent, face_box=face_box)


@torch.no_grad()
def with_face(reference: Reference, dit: RAPTransformer, vae: VideoVAE, picture: torch.Tensor) -> Reference:
    """The reference with the face crop in its face_box encoded (face.py) if `dit` has the identity
    branch, else as it is. picture [3, H, W] as for encode_reference."""
    if dit.identity is None:
        return reference
    face = encode_face(vae, picture, reference.face_box).to(
        reference.latent.device, reference.latent.dtype
    )  # [1, C, 1, h, w]
    return dataclasses.replace(reference, face=face)


class Talk:
    """The chunk plan of a track and the state between its chunks."""

    def __init__(
        self,
        sampling: SamplingConfig,
        reference: Reference,
        chunks: Sequence[Chunk],
        generator: torch.Generator,
        temporal_stride: int,
        num_frames: int | None,
    ):
        """chunks: the plan (timing.plan_chunks, or timing.EndlessChunks for a talk of num_frames None);
        generator: every random draw of the talk, in FlashHead's order (`start` makes it from the seed)."""
        if reference.chunk_latents != sampling.chunk_latents:
            raise RAPInputError(
                f"The reference latent spans {reference.chunk_latents} latent frames but chunks have "
                f"{sampling.chunk_latents}; encode the reference for this chunk length."
            )
        self.sampling, self.chunks, self.num_frames, self.temporal_stride = (
            sampling,
            chunks,
            num_frames,
            temporal_stride,
        )
        self.timesteps = flow_timesteps(
            sampling.steps, sampling.shift, sampling.timesteps, sampling.schedule
        )  # [steps + 1]
        first = reference.latent[:, :, :1]  # [1, C, 1, h, w]
        self.continuity = continuity_mode(sampling.continuity).start(sampling, first, self.timesteps, temporal_stride)
        self.generator = generator
        self.next_chunk = 0

    @classmethod
    @torch.no_grad()
    def start(
        cls,
        sampling: SamplingConfig,
        dit: RAPTransformer,
        vae: VideoVAE,
        picture: torch.Tensor,
        seed: int,
        num_frames: int | None,
        leads: bool,
        reference: Reference | None = None,
        face_box: tuple[float, float, float, float] | None = None,
    ) -> tuple[Talk, Reference]:
        """A talk's start -> (talk, its reference).

        picture [3, H, W] in [-1, 1] on the VAE's device and dtype. The seed's generator makes the
        reference latent first when `sampling.sample_posterior` (FlashHead's first draw); otherwise the
        latent is the posterior mean, and `reference` is reused if it was encoded for this chunk length.
        The identity branch, if the DiT has one, sees the face in `face_box`, else in the given
        reference's (None: CENTRE_FACE). num_frames: of the track, chunked by timing.plan_chunks (`leads`:
        the grid starts with the overlap, as the audio context decides); None: a talk without end
        (live), on the leading grid.
        """
        generator = torch.Generator().manual_seed(seed)
        if face_box is None and reference is not None:
            face_box = reference.face_box
        if sampling.sample_posterior or reference is None or reference.chunk_latents != sampling.chunk_latents:
            reference = encode_reference(
                vae, picture, sampling.chunk_latents, generator if sampling.sample_posterior else None, face_box
            )
        reference = with_face(dataclasses.replace(reference, face_box=face_box), dit, vae, picture)
        overlap, stride = overlap_latents(sampling), vae.temporal_stride
        chunks = (
            EndlessChunks(sampling.chunk_latents, overlap, stride)
            if num_frames is None
            else plan_chunks(num_frames, sampling.chunk_latents, overlap, stride, leads)
        )
        return cls(sampling, reference, chunks, generator, stride, num_frames), reference

    @property
    def done(self) -> bool:
        return self.next_chunk == len(self.chunks)

    @property
    def clip_frames(self) -> int:
        return covered_video_frames(self.sampling.chunk_latents, self.temporal_stride)

    @property
    def frames_done(self) -> int:
        """Video frames emitted by the chunks sampled so far."""
        if self.next_chunk == 0:
            return 0
        last = self.chunks[self.next_chunk - 1]
        return last.start + last.emit_to

    def chunks_for(self, new_frames: int) -> list[Chunk]:
        """The chunks from the next one on that add at least `new_frames` frames (a whole chunk at a
        time), or reach the end of the track; 0: all the rest. For a talk with an end."""
        goal = self.num_frames if new_frames == 0 else min(self.frames_done + new_frames, self.num_frames)
        last = self.next_chunk
        while self.chunks[last].start + self.chunks[last].emit_to < goal:
            last += 1
        return list(self.chunks[self.next_chunk : last + 1])

    def fork(self, sampling: SamplingConfig) -> Talk:
        """An independent copy that goes on with `sampling`, whose structure fields must match this talk's
        (guidance scale and colour correction may change between segments)."""
        changed = [name for name in STRUCTURE_FIELDS if getattr(sampling, name) != getattr(self.sampling, name)]
        if changed:
            was = ", ".join(f"{name}={getattr(self.sampling, name)!r}" for name in changed)
            raise RAPInputError(
                f"A continued talk must keep the settings that shape its chunks; changed: {', '.join(changed)}. "
                f"Set them as in the earlier sampler ({was})."
            )
        other = copy.copy(self)
        other.sampling, other.continuity = sampling, copy.deepcopy(self.continuity)
        other.generator = torch.Generator().set_state(self.generator.get_state())
        return other


@contextlib.contextmanager
def audio_attention(dit: RAPTransformer, sampling: SamplingConfig) -> Iterator[None]:
    """Run with `sampling`'s audio attention mode and hybrid alphas; restore the DiT's own afterwards."""
    own = dit.config.dit
    dit.set_audio_mode(
        sampling.audio_mode or own.audio_mode,
        own.alpha_w if sampling.alpha_w is None else sampling.alpha_w,
        own.alpha_delta if sampling.alpha_delta is None else sampling.alpha_delta,
    )
    try:
        yield
    finally:
        dit.set_audio_mode(own.audio_mode, own.alpha_w, own.alpha_delta)


def null_audio_tokens(dit: RAPTransformer, audio: AudioConfig, clip: int, like: torch.Tensor) -> torch.Tensor:
    """Audio tokens of all-zero wav2vec2 features: the unconditional input of audio CFG -> [1, K, M, D]."""
    silence = like.new_zeros(1, clip, audio.window, audio.num_hidden_layers, audio.hidden_size)  # [1, T_c, W, L, C]
    return dit.encode_audio(silence)


def intensity_controls(sampling: SamplingConfig, dit: RAPTransformer) -> torch.Tensor:
    """sampling's (expression, head motion) as [1, 2], checked: each in 0..1, and away from the natural
    0.5 only for a DiT that has the controls."""
    levels = (sampling.expression, sampling.head_motion)
    for name, value in zip(("expression", "head_motion"), levels):
        if not 0.0 <= value <= 1.0:
            raise RAPInputError(f"{name} must be in [0, 1] (got {value}); 0.5 is the training clips' median.")
    if dit.intensity is None and levels != NATURAL:
        raise RAPInputError(
            f"This model (preset '{dit.config.name}') has no motion-intensity controls; leave expression and "
            f"head_motion at 0.5 (got {sampling.expression}, {sampling.head_motion})."
        )
    return torch.tensor([levels])


@torch.no_grad()
def sample_chunk(
    talk: Talk, dit: RAPTransformer, features, reference: Reference, progress: StepCallback | None = None
) -> torch.Tensor:
    """Denoise the talk's next chunk -> its clean latent [1, C, K, h, w]; call `hand_over` after.

    `features` gives audio windows (AudioFeatures or EncodedAudio); `reference` lies on the DiT's
    device and dtype, and so does the result.
    """
    chunk, sampling, like = talk.chunks[talk.next_chunk], talk.sampling, reference.latent
    windows = features.windows(chunk.start, chunk.start + talk.clip_frames).to(like)  # [1, T_c, W, L, C]
    tokens = dit.encode_audio(windows)  # [1, K, M, D]
    noise = torch.randn(like.shape, generator=talk.generator).to(like)
    intensity = intensity_controls(sampling, dit)  # [1, 2]

    def conditioned(x: torch.Tensor, t: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        ref = reference.latent.expand(x.shape[0], -1, -1, -1, -1)  # [B, C, K, h, w]
        return dit(x, ref, t, audio, intensity, reference.face)

    null = None if sampling.cfg_scale == 1.0 else null_audio_tokens(dit, dit.config.audio, talk.clip_frames, like)
    velocity = audio_guidance(conditioned, tokens, sampling.cfg_scale, null)

    def before_step(step: int, x: torch.Tensor) -> torch.Tensor:
        x = talk.continuity.before_step(step, x)
        if progress is not None:
            progress(chunk.index, step, x)
        return x

    with audio_attention(dit, sampling):
        latent = denoise(velocity, noise, talk.timesteps, stepper(sampling.sampler, talk.generator), before_step)
    return talk.continuity.finish(latent)


@torch.no_grad()
def decode_chunk(vae: VideoVAE, latent: torch.Tensor, reference: Reference, color_correction: float) -> torch.Tensor:
    """latent [1, C, K, h, w] -> video [1, 3, T_c, H, W], about [-1, 1], colour-matched to the
    reference. Unclamped, as FlashHead matches and re-encodes it; `chunk_frames` clamps what is shown."""
    video = vae.decode(latent)
    if color_correction > 0:
        video = match_colors(video, reference.image.to(video), color_correction)
    return video


@torch.no_grad()
def hand_over(talk: Talk, vae: VideoVAE, video: torch.Tensor | None) -> None:
    """Finish the chunk just sampled: pass the next one what it inherits. video [1, 3, T_c, H, W]: the
    chunk decoded, which motion-frame continuity re-encodes the tail of (a posterior sample from the
    talk's generator when `sampling.sample_posterior`, FlashHead's last draw)."""
    talk.continuity.hand_over(
        video, lambda frames: vae.encode(frames, sample=talk.sampling.sample_posterior, generator=talk.generator)
    )
    talk.next_chunk += 1


def advance(
    talk: Talk,
    dit: RAPTransformer,
    vae: VideoVAE,
    features,
    reference: Reference,
    decode: bool,
    progress: StepCallback | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sample the talk's next chunk and hand over to the one after -> (latent [1, C, K, h, w],
    video [1, 3, T_c, H, W] or None). The chunk is decoded when `decode` is true, and always under
    motion-frame continuity, which needs the decoded frames to hand over."""
    latent = sample_chunk(talk, dit, features, reference, progress)
    video = None
    if decode or talk.continuity.needs_decoded_chunks:
        video = decode_chunk(vae, latent.to(next(vae.parameters()).dtype), reference, talk.sampling.color_correction)
    hand_over(talk, vae, video)
    return latent, video


def chunk_frames(chunk: Chunk, video: torch.Tensor) -> torch.Tensor:
    """The frames chunk `chunk` adds to the video: [n, H, W, 3] float32 in 0..1 on the CPU."""
    frames = rearrange(video[0, :, chunk.emit_from : chunk.emit_to], "c t h w -> t h w c")  # [n, H, W, 3]
    return ((frames.float() + 1) / 2).clamp(0, 1).cpu()
