"""Training data: talking-head clips encoded once (VAE latents, audio features, the reference
latent, face and mouth masks on the latent grid, the clip's motion statistics, the face crop's
latent), stored as one safetensors file per clip, and sampled into static-dynamic training windows.

Motion-intensity labels come from the clips themselves: how far the mouth opens per unit of the
speech's loudness (the expression) and the spread of the head position (the head motion), each
turned into its percentile over the data set, so 0.5 is the median clip."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from safetensors.torch import load_file, save_file

from ..audio_features import AudioFeatures, EncodedAudio
from ..config import RAPConfig
from ..errors import RAPInputError
from ..face import encode_face
from ..media.normalise import prepare_image
from ..models.audio import SpeechEncoder
from ..models.vae import VideoVAE
from ..synthetic import Layout, layout, make_clip, mouth_track, portrait
from ..talk import encode_reference
from ..timing import covered_video_frames, latent_frame_count
from .objective import sample_window, window_frames


@dataclass(frozen=True)
class EncodedClip:
    latents: torch.Tensor  # [C, F, h, w] the whole clip
    features: torch.Tensor  # [T', L, Ca] audio features of video frames [0, T'), T' >= covered frames + W//2
    reference: torch.Tensor  # [C, K, h, w] the portrait held for a K-latent window
    face_mask: torch.Tensor  # [h, w] in 0..1
    mouth_mask: torch.Tensor  # [h, w] in 0..1, the mouth box
    motion: torch.Tensor  # [2] the mouth's response to loudness, spread (norm of the std) of the head position
    face: torch.Tensor  # [C, 1, h, w] the portrait's face crop, encoded (rap_core.face), for the identity branch

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {field.name: getattr(self, field.name).contiguous() for field in dataclasses.fields(self)}


@dataclass(frozen=True)
class TrainingBatch:
    latents: torch.Tensor  # [B, C, K, h, w] clean window latents
    reference: torch.Tensor  # [B, C, K, h, w]
    audio_windows: torch.Tensor  # [B, T, W, L, Ca], T = 1 + stride*(K-1)
    face_mask: torch.Tensor  # [B, h, w]
    mouth_mask: torch.Tensor  # [B, h, w]
    intensity: torch.Tensor  # [B, 2] (expression, head motion) percentiles in 0..1
    face: torch.Tensor  # [B, C, 1, h, w]

    def to(self, device, dtype=None) -> TrainingBatch:
        return TrainingBatch(*(getattr(self, field.name).to(device, dtype) for field in dataclasses.fields(self)))


@torch.no_grad()
def encode_clip(
    config: RAPConfig,
    vae: VideoVAE,
    audio_encoder: SpeechEncoder,
    frames: torch.Tensor,
    audio: torch.Tensor,
    portrait: torch.Tensor,
    face_mask: torch.Tensor,
    mouth_mask: torch.Tensor,
    motion: torch.Tensor,
    face_box: tuple[float, float, float, float] | None = None,
) -> EncodedClip:
    """frames [T, H, W, 3] in 0..1 at the preset's size; audio [S] mono at the preset's rate with
    T = ceil(S * fps / rate); portrait [H, W, 3] in 0..1; face_mask, mouth_mask [H, W] (pixels);
    motion [2] (see EncodedClip); face_box (rap_core.face; None: its centre crop) -> EncodedClip."""
    stride, window = vae.temporal_stride, config.sampling.chunk_latents
    num_latents = latent_frame_count(frames.shape[0], stride)
    covered = covered_video_frames(num_latents, stride)
    video = rearrange(frames.float() * 2 - 1, "t h w c -> 1 c t h w")  # [1, 3, T, H, W]
    video = torch.cat([video, repeat(video[:, :, -1:], "b c 1 h w -> b c t h w", t=covered - frames.shape[0])], dim=2)
    latents = vae.encode(video)[0]  # [C, F, h, w]
    features = AudioFeatures(audio_encoder, audio, config).encode_all(covered + config.audio.window // 2)[0]
    picture = prepare_image(portrait, config.height, config.width)  # [3, H, W]
    reference = encode_reference(vae, picture, window).latent[0]
    face = encode_face(vae, picture, face_box)[0]  # [C, 1, h, w]
    grid = latents.shape[-2:]
    face_grid, mouth_grid = (F.adaptive_avg_pool2d(m.float()[None, None], grid)[0, 0] for m in (face_mask, mouth_mask))
    return EncodedClip(latents, features, reference, face_grid, mouth_grid, motion.float(), face)  # masks [h, w]


def mouth_region(layout: Layout) -> torch.Tensor:
    """The lip loss's mask [H, W] of a synthetic identity: its mouth box (under every sway)."""
    mask = torch.zeros_like(layout.face_skin)
    y0, y1, x0, x1 = layout.mouth_box
    mask[y0:y1, x0:x1] = True
    return mask


def face_region(layout: Layout) -> torch.Tensor:
    """The face loss's mask [H, W] of a synthetic identity: its bare skin and its mouth box. Given
    the centre pose's layout (sway 0) it is where the face is at rest: the head moves it by at most
    SWAY_LIMIT, a sixth of a 32-pixel latent cell at 128 px, and the loss sees it pooled to cells."""
    return layout.face_skin | mouth_region(layout)


def motion_statistics(openness: torch.Tensor, loudness: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """mouth opening [T], the speech's loudness envelope [T], head position [T, 2] -> [2], the raw
    material of the intensity labels: the least-squares slope of the opening on the loudness (how
    wide this speaker opens for the same speech) and the norm of the position's per-axis std.

    The slope, not the opening's spread, measures the expression: the spread also grows with how
    much the speech itself varies, so a label from it would ask the model, at a low level, to
    mouth ordinary speech the way a flat utterance is mouthed, which it can only do by giving up
    lip sync."""
    drive = loudness.float() - loudness.float().mean()  # [T]
    response = (drive * (openness.float() - openness.float().mean())).sum() / drive.square().sum().clamp_min(1e-12)
    return torch.stack([response, head.float().std(0).norm()])


def percentiles(values: torch.Tensor) -> torch.Tensor:
    """[N, K] -> [N, K]: each value's rank among its column, scaled to 0..1 (ties share the mean rank)."""
    below = (values[None] < values[:, None]).sum(1).float()  # [N, K]
    equal = (values[None] == values[:, None]).sum(1).float()  # [N, K], itself included
    return (below + (equal - 1) / 2) / max(values.shape[0] - 1, 1)


def synthetic_clips(
    config: RAPConfig, vae: VideoVAE, audio_encoder: SpeechEncoder, count: int, seed: int = 0, split: str = "train"
) -> list[EncodedClip]:
    """`count` clips of the synthetic world (identities and utterances seed .. seed + count - 1),
    rendered at the preset's size and encoded for it."""
    if config.height != config.width:
        raise RAPInputError(
            f"The synthetic world renders square frames; preset '{config.name}' is {config.width}x{config.height}."
        )
    clips = []
    for index in range(seed, seed + count):
        clip = make_clip(index, size=config.height, split=split, fps=config.fps)
        marks, pose = layout(clip.identity, config.height), layout(clip.identity, config.height, sway=0.0)
        still = portrait(clip.identity, config.height)
        loudness = mouth_track(clip.audio, clip.sample_rate, config.fps).openness  # [T] the speech's envelope in 0..1
        motion = motion_statistics(clip.openness, loudness, clip.sway)
        clips.append(
            encode_clip(
                config,
                vae,
                audio_encoder,
                clip.frames,
                clip.audio,
                still,
                face_region(pose),
                mouth_region(marks),
                motion,
                marks.face_box,
            )
        )
    return clips


def save_clips(directory: str | os.PathLike, clips: list[EncodedClip], first_index: int = 0) -> None:
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    for offset, clip in enumerate(clips):
        save_file(clip.as_dict(), folder / f"clip_{first_index + offset:06d}.safetensors")


class ClipSet:
    """The encoded clips of a data folder, sampled into training windows."""

    def __init__(self, directory: str | os.PathLike):
        files = sorted(Path(directory).glob("clip_*.safetensors"))
        if not files:
            raise RAPInputError(
                f"No training clips (clip_*.safetensors) in '{directory}'; make them with "
                "`python -m rap_core make-data --preset P --out DIR`."
            )
        names = {field.name for field in dataclasses.fields(EncodedClip)}
        self.clips = []
        for path in files:
            stored = load_file(path)
            if set(stored) != names:
                raise RAPInputError(
                    f"'{path}' holds {sorted(stored)}, not the clip fields {sorted(names)}: it was made by another "
                    "version. Make the data again with `python -m rap_core make-data`."
                )
            self.clips.append(EncodedClip(**stored))
        self.intensity = percentiles(torch.stack([clip.motion for clip in self.clips]))  # [N, 2]

    def batch(
        self, generator: torch.Generator, batch_size: int, window: int, beta: float, audio_window: int, stride: int
    ) -> TrainingBatch:
        """`batch_size` windows of `window` latents from clips drawn at random."""
        picks = torch.randint(len(self.clips), (batch_size,), generator=generator).tolist()
        latents, references, audio, masks, mouths, faces = [], [], [], [], [], []
        for index in picks:
            clip = self.clips[index]
            start = sample_window(clip.latents.shape[1], window, beta, generator)
            first, end = window_frames(start, window, stride)
            features = EncodedAudio(clip.features, clip.features.shape[0], audio_window, window)
            latents.append(clip.latents[:, start : start + window])
            references.append(clip.reference[:, :window])
            audio.append(features.windows(first, end)[0])  # [T, W, L, Ca]
            masks.append(clip.face_mask)
            mouths.append(clip.mouth_mask)
            faces.append(clip.face)
        return TrainingBatch(
            torch.stack(latents),
            torch.stack(references),
            torch.stack(audio),
            torch.stack(masks),
            torch.stack(mouths),
            self.intensity[picks],
            torch.stack(faces),
        )
