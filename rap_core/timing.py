"""The frame rule: how many video and latent frames a clip of audio yields.

Everything is exact integer arithmetic on sample counts, so 1.32 s of 16 kHz audio
(21120 samples) gives 33 video frames, never the 34 a float `ceil(1.32 * 25)` would.

- video frames  T = ceil(samples * fps / sample_rate): one frame for every started 1/fps s.
- latent frames F = 1 + ceil((T - 1) / stride): the causal VAE's first latent frame covers one
  video frame, every later one `stride` frames.
- covered frames  = 1 + stride * (F - 1) >= T: what the VAE decodes; the pipeline trims the
  video back to T frames.
"""

from __future__ import annotations

from .errors import RAPInputError


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise RAPInputError(f"{name} must be a positive integer, got {value}.")


def video_frame_count(num_samples: int, sample_rate: int, fps: int) -> int:
    """Video frames for `num_samples` of audio: ceil(num_samples * fps / sample_rate)."""
    _check_positive(num_samples=num_samples, sample_rate=sample_rate, fps=fps)
    return -(-num_samples * fps // sample_rate)


def samples_for_frames(num_frames: int, sample_rate: int, fps: int) -> int:
    """The longest audio (in samples) that still gives exactly `num_frames` video frames:
    floor(num_frames * sample_rate / fps). Pad audio to this length to fill `num_frames` frames."""
    _check_positive(num_frames=num_frames, sample_rate=sample_rate, fps=fps)
    return num_frames * sample_rate // fps


def latent_frame_count(video_frames: int, temporal_stride: int) -> int:
    """Latent frames needed for `video_frames` video frames: 1 + ceil((T - 1) / stride)."""
    _check_positive(video_frames=video_frames, temporal_stride=temporal_stride)
    return 1 + -(-(video_frames - 1) // temporal_stride)


def covered_video_frames(latent_frames: int, temporal_stride: int) -> int:
    """Video frames the VAE decodes from `latent_frames` latent frames: 1 + stride * (F - 1)."""
    _check_positive(latent_frames=latent_frames, temporal_stride=temporal_stride)
    return 1 + temporal_stride * (latent_frames - 1)
