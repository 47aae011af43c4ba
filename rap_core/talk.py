"""A talk: one portrait animated along one speech track, generated a chunk at a time.

`Talk` holds everything that carries from one chunk to the next: the chunk plan over the whole
track, the continuity strategy's state and the noise generator. Generation can stop after any
chunk and go on later (another call, another ComfyUI sampler node) and give exactly the frames
of one uninterrupted run. The functions take the networks as arguments, so `RAPPipeline` and the
ComfyUI nodes (whose networks ComfyUI's model manager places) share this one implementation.

Per chunk (`advance`): `sample_chunk` (audio tokens, noise, denoising with the continuity prefix)
-> `decode_chunk` (VAE, colour match) -> `hand_over` (what the next chunk inherits); then
`chunk_frames` gives the chunk's new frames.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator

import torch
from einops import rearrange, repeat

from .config import AudioConfig, SamplingConfig
from .errors import RAPInputError
from .face import encode_face
from .models.dit import RAPTransformer
from .models.intensity import NATURAL
from .models.vae import VideoVAE
from .sampling.color import match_colors
from .sampling.continuity import CleanPrefix, NoContinuity, StepwiseInheritance
from .sampling.guidance import audio_guidance
from .sampling.loop import denoise
from .sampling.schedule import flow_timesteps
from .timing import Chunk, covered_video_frames, plan_chunks

# progress(chunk_index, step_index, latent the model is about to see)
StepCallback = Callable[[int, int, torch.Tensor], None]

# SamplingConfig fields that shape the chunks and what they inherit: a continued talk keeps them.
STRUCTURE_FIELDS = (
    "audio_context", "steps", "shift", "schedule", "timesteps", "sampler", "continuity", "inherit_latents",
    "motion_latents", "chunk_latents", "sample_posterior",
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
        return dataclasses.replace(self, image=self.image.to(device, dtype), latent=self.latent.to(device, dtype),
                                   face=face)


@torch.no_grad()
def encode_reference(
    vae: VideoVAE, picture: torch.Tensor, chunk_latents: int, generator: torch.Generator | None = None,
    face_box: tuple[float, float, float, float] | None = None,
) -> Reference:
    """picture [3, H, W] in [-1, 1] (media.prepare_image), on the VAE's device and dtype. With a
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
    face = encode_face(vae, picture, reference.face_box).to(reference.latent.device, reference.latent.dtype)  # [1, C, 1, h, w]
    return dataclasses.replace(reference, face=face)


def overlap_latents(cfg: SamplingConfig) -> int:
    """Latent frames two consecutive chunks share under `cfg.continuity`."""
    overlaps = {"inherit": cfg.inherit_latents, "motion_frames": cfg.motion_latents, "none": 0}
    if cfg.continuity not in overlaps:
        raise RAPInputError(f"Unknown continuity '{cfg.continuity}'; choose one of {sorted(overlaps)}.")
    return overlaps[cfg.continuity]


class Talk:
    """The chunk plan of a track of `num_frames` video frames and the state between its chunks."""

    def __init__(self, cfg: SamplingConfig, reference: Reference, num_frames: int, generator: torch.Generator,
                 temporal_stride: int, leads: bool = False):
        """generator: every random draw of the talk, in FlashHead's order (start_talk makes it from
        the seed); leads: the chunk grid starts with the overlap (timing.plan_chunks), as the audio
        context decides."""
        if reference.chunk_latents != cfg.chunk_latents:
            raise RAPInputError(
                f"The reference latent spans {reference.chunk_latents} latent frames but chunks have "
                f"{cfg.chunk_latents}; encode the reference for this chunk length."
            )
        self.cfg, self.num_frames, self.temporal_stride = cfg, num_frames, temporal_stride
        self.chunks = plan_chunks(num_frames, cfg.chunk_latents, overlap_latents(cfg), temporal_stride, leads)
        self.timesteps = flow_timesteps(cfg.steps, cfg.shift, cfg.timesteps, cfg.schedule)  # [steps + 1]
        first = reference.latent[:, :, :1]  # [1, C, 1, h, w]
        self.continuity = {
            "inherit": lambda: StepwiseInheritance(cfg.inherit_latents, first, self.timesteps),
            "motion_frames": lambda: CleanPrefix(first),
            "none": NoContinuity,
        }[cfg.continuity]()
        self.generator = generator
        self.next_chunk = 0

    @property
    def done(self) -> bool:
        return self.next_chunk == len(self.chunks)

    @property
    def clip_frames(self) -> int:
        return covered_video_frames(self.cfg.chunk_latents, self.temporal_stride)

    @property
    def needs_decoded_chunks(self) -> bool:
        """Whether each chunk must be decoded before the next is sampled (FlashHead's motion frames)."""
        return isinstance(self.continuity, CleanPrefix)

    @property
    def frames_done(self) -> int:
        """Video frames emitted by the chunks sampled so far."""
        if self.next_chunk == 0:
            return 0
        last = self.chunks[self.next_chunk - 1]
        return last.start + last.emit_to

    def fork(self, cfg: SamplingConfig) -> Talk:
        """An independent copy that goes on with `cfg`, whose structure fields must match this talk's
        (guidance scale and colour correction may change between segments)."""
        changed = [name for name in STRUCTURE_FIELDS if getattr(cfg, name) != getattr(self.cfg, name)]
        if changed:
            was = ", ".join(f"{name}={getattr(self.cfg, name)!r}" for name in changed)
            raise RAPInputError(
                f"A continued talk must keep the settings that shape its chunks; changed: {', '.join(changed)}. "
                f"Set them as in the earlier sampler ({was})."
            )
        other = copy.copy(self)
        other.cfg, other.continuity = cfg, copy.deepcopy(self.continuity)
        other.generator = torch.Generator().set_state(self.generator.get_state())
        return other


@torch.no_grad()
def start_talk(
    cfg: SamplingConfig, dit: RAPTransformer, vae: VideoVAE, picture: torch.Tensor, num_frames: int, seed: int,
    leads: bool, reference: Reference | None = None, face_box: tuple[float, float, float, float] | None = None,
) -> tuple[Talk, Reference]:
    """A talk's start, as RAPPipeline and RAP Sampler both begin one -> (talk, its reference).

    picture [3, H, W] in [-1, 1] on the VAE's device and dtype. The seed's generator makes the
    reference latent first when `cfg.sample_posterior` (FlashHead's first draw); otherwise the
    latent is the posterior mean, and `reference` is reused if it was encoded for this chunk length.
    The identity branch, if the DiT has one, sees the face in `face_box`, else in the given
    reference's (None: CENTRE_FACE).
    """
    generator = torch.Generator().manual_seed(seed)
    if face_box is None and reference is not None:
        face_box = reference.face_box
    if cfg.sample_posterior or reference is None or reference.chunk_latents != cfg.chunk_latents:
        reference = encode_reference(vae, picture, cfg.chunk_latents, generator if cfg.sample_posterior else None,
                                     face_box)
    reference = with_face(dataclasses.replace(reference, face_box=face_box), dit, vae, picture)
    return Talk(cfg, reference, num_frames, generator, vae.temporal_stride, leads), reference


@contextlib.contextmanager
def audio_attention(dit: RAPTransformer, cfg: SamplingConfig) -> Iterator[None]:
    """Run with `cfg`'s audio attention mode and hybrid alphas; restore the DiT's own afterwards."""
    own = dit.config.dit
    dit.set_audio_mode(
        cfg.audio_mode or own.audio_mode,
        own.alpha_w if cfg.alpha_w is None else cfg.alpha_w,
        own.alpha_delta if cfg.alpha_delta is None else cfg.alpha_delta,
    )
    try:
        yield
    finally:
        dit.set_audio_mode(own.audio_mode, own.alpha_w, own.alpha_delta)


def null_audio_tokens(dit: RAPTransformer, audio: AudioConfig, clip: int, like: torch.Tensor) -> torch.Tensor:
    """Audio tokens of all-zero wav2vec2 features: the unconditional input of audio CFG -> [1, K, M, D]."""
    silence = like.new_zeros(1, clip, audio.window, audio.num_hidden_layers, audio.hidden_size)  # [1, T_c, W, L, C]
    return dit.encode_audio(silence)


def intensity_controls(cfg: SamplingConfig, dit: RAPTransformer) -> torch.Tensor:
    """cfg's (expression, head motion) as [1, 2], checked: each in 0..1, and away from the natural
    0.5 only for a DiT that has the controls."""
    levels = (cfg.expression, cfg.head_motion)
    for name, value in zip(("expression", "head_motion"), levels):
        if not 0.0 <= value <= 1.0:
            raise RAPInputError(f"{name} must be in [0, 1] (got {value}); 0.5 is the training clips' median.")
    if dit.intensity is None and levels != NATURAL:
        raise RAPInputError(
            f"This model (preset '{dit.config.name}') has no motion-intensity controls; leave expression and "
            f"head_motion at 0.5 (got {cfg.expression}, {cfg.head_motion})."
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
    chunk, cfg, like = talk.chunks[talk.next_chunk], talk.cfg, reference.latent
    windows = features.windows(chunk.start, chunk.start + talk.clip_frames).to(like)  # [1, T_c, W, L, C]
    tokens = dit.encode_audio(windows)  # [1, K, M, D]
    noise = torch.randn(like.shape, generator=talk.generator).to(like)
    intensity = intensity_controls(cfg, dit)  # [1, 2]

    def model_fn(x: torch.Tensor, t: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        ref = reference.latent.expand(x.shape[0], -1, -1, -1, -1)  # [B, C, K, h, w]
        return dit(x, ref, t, audio, intensity, reference.face)

    if cfg.cfg_scale != 1.0:
        model_fn = audio_guidance(model_fn, cfg.cfg_scale, null_audio_tokens(dit, dit.config.audio, talk.clip_frames, like))

    def before_step(step: int, x: torch.Tensor) -> torch.Tensor:
        x = talk.continuity.before_step(step, x)
        if progress is not None:
            progress(chunk.index, step, x)
        return x

    with audio_attention(dit, cfg):
        latent = denoise(model_fn, noise, tokens, talk.timesteps, cfg.sampler, talk.generator, before_step=before_step)
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
def hand_over(talk: Talk, vae: VideoVAE | None = None, video: torch.Tensor | None = None) -> None:
    """Finish the chunk just sampled: pass the next one what it inherits. Motion-frame continuity
    needs the chunk's decoded `video` [1, 3, T_c, H, W] and the VAE to re-encode its tail (a
    posterior sample from the talk's generator when `cfg.sample_posterior`, FlashHead's last draw)."""
    if isinstance(talk.continuity, StepwiseInheritance):
        talk.continuity.hand_over()
    elif isinstance(talk.continuity, CleanPrefix):
        if vae is None or video is None:
            raise RAPInputError("Motion-frame continuity needs the decoded chunk and the VAE to hand over.")
        tail = covered_video_frames(talk.cfg.motion_latents, vae.temporal_stride)
        talk.continuity.hand_over(vae.encode(video[:, :, -tail:], sample=talk.cfg.sample_posterior,
                                             generator=talk.generator))  # [1, C, p, h, w]
    talk.next_chunk += 1


def advance(
    talk: Talk, dit: RAPTransformer, vae: VideoVAE, features, reference: Reference, decode: bool,
    progress: StepCallback | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sample the talk's next chunk and hand over to the one after -> (latent [1, C, K, h, w],
    video [1, 3, T_c, H, W] or None). The chunk is decoded when `decode` is true, and always under
    motion-frame continuity, which needs the decoded frames to hand over."""
    latent = sample_chunk(talk, dit, features, reference, progress)
    video = None
    if decode or talk.needs_decoded_chunks:
        video = decode_chunk(vae, latent.to(next(vae.parameters()).dtype), reference, talk.cfg.color_correction)
    hand_over(talk, vae, video)
    return latent, video


def chunk_frames(chunk: Chunk, video: torch.Tensor) -> torch.Tensor:
    """The frames chunk `chunk` adds to the video: [n, H, W, 3] float32 in 0..1 on the CPU."""
    frames = rearrange(video[0, :, chunk.emit_from : chunk.emit_to], "c t h w -> t h w c")  # [n, H, W, 3]
    return ((frames.float() + 1) / 2).clamp(0, 1).cpu()
