"""RAPPipeline: portrait + speech -> talking-portrait frames, generated chunk by chunk.

Per chunk (clip of 1 + 8(K-1) video frames, see timing.plan_chunks): audio windows of the
clip's frames -> audio tokens; noise -> flow-matching steps with the DiT (audio CFG, continuity
prefix written before every step) -> VAE decode -> optional Lab colour match -> the new frames.
Memory is bounded by one chunk whatever the audio length; `stream` yields frames as decoded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator

import torch
from einops import rearrange, repeat

from .audio_features import AudioFeatures
from .config import RAPConfig, SamplingConfig, get_preset
from .errors import RAPInputError
from .loading.models import load_dit, load_vae, load_wav2vec2
from .media import audio_to_mono, prepare_image
from .models.audio import AudioEncoder, build_wav2vec2
from .models.dit import RAPTransformer, build_dit
from .models.vae import VideoVAE, build_vae
from .sampling.color import match_colors
from .sampling.continuity import CleanPrefix, NoContinuity, StepwiseInheritance
from .sampling.guidance import audio_guidance
from .sampling.loop import denoise
from .sampling.schedule import flow_timesteps
from .timing import Chunk, covered_video_frames, plan_chunks

# progress(chunk_index, step_index, latent the model is about to see)
StepCallback = Callable[[int, int, torch.Tensor], None]
_RANDOM_WEIGHTS_SEED = 0  # the `tiny` preset's weights are random but reproducible


@dataclasses.dataclass
class _Chunking:
    """What one generate/stream call needs between chunks."""

    features: AudioFeatures
    reference_image: torch.Tensor  # [1, 3, 1, H, W] in [-1, 1]
    reference: torch.Tensor  # [1, C, K, h, w] static reference latent
    timesteps: torch.Tensor  # [steps + 1]
    chunks: list[Chunk]


class RAPPipeline:
    def __init__(
        self,
        config: RAPConfig,
        dit: RAPTransformer,
        vae: VideoVAE,
        audio_encoder: AudioEncoder,
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
        """Build a preset's networks. `tiny` uses reproducible random weights; the other presets
        need their files: `dit` and `vae` (.safetensors) and `audio_encoder` (a wav2vec2 folder)."""
        config = get_preset(name)
        if name == "tiny":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_RANDOM_WEIGHTS_SEED)
                networks = (
                    build_dit(config, device=device, dtype=dtype, attention_backend=attention_backend),
                    build_vae(config, device=device, dtype=dtype),
                    build_wav2vec2(config.audio, device=device),
                )
            return cls(config, *networks, device=device, dtype=dtype)
        missing = [arg for arg, path in (("dit", dit), ("vae", vae), ("audio_encoder", audio_encoder)) if path is None]
        if missing:
            raise RAPInputError(
                f"Preset '{name}' needs weight files: pass {', '.join(missing)} (paths to the DiT and VAE "
                "safetensors and the wav2vec2 folder; see README, 'models/rap/')."
            )
        return cls(
            config,
            load_dit(dit, config, device=device, dtype=dtype, attention_backend=attention_backend),
            load_vae(vae, config, device=device, dtype=dtype),
            load_wav2vec2(audio_encoder, device=device),
            device=device,
            dtype=dtype,
        )

    def sampling(self, **options) -> SamplingConfig:
        """The preset's sampling settings with `options` (SamplingConfig fields) applied."""
        fields = {f.name for f in dataclasses.fields(SamplingConfig)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise RAPInputError(f"Unknown option(s) {unknown}; choose from {sorted(fields)}.")
        cfg = dataclasses.replace(self.config.sampling, **options)
        if cfg.continuity not in ("inherit", "motion_frames", "none"):
            raise RAPInputError(
                f"Unknown continuity '{cfg.continuity}'; choose 'inherit', 'motion_frames' or 'none'."
            )
        return cfg

    def overlap_latents(self, cfg: SamplingConfig) -> int:
        return {"inherit": cfg.inherit_latents, "motion_frames": cfg.motion_latents, "none": 0}[cfg.continuity]

    def chunk_plan(self, num_frames: int, **options) -> list[Chunk]:
        """The chunks a clip of `num_frames` video frames is generated in (for progress bars)."""
        cfg = self.sampling(**options)
        return plan_chunks(num_frames, cfg.chunk_latents, self.overlap_latents(cfg), self.vae.temporal_stride)

    def _prepare(self, image, audio, sample_rate: int, cfg: SamplingConfig) -> _Chunking:
        mono = audio_to_mono(audio, sample_rate, self.config.audio.sample_rate)
        features = AudioFeatures(self.audio_encoder, mono, self.config)
        chunks = plan_chunks(
            features.num_frames, cfg.chunk_latents, self.overlap_latents(cfg), self.vae.temporal_stride
        )
        picture = prepare_image(image, self.config.height, self.config.width).to(self.device, self.dtype)
        clip = covered_video_frames(cfg.chunk_latents, self.vae.temporal_stride)
        still = repeat(picture, "c h w -> 1 c t h w", t=clip)  # [1, 3, T_c, H, W]
        with torch.no_grad():
            reference = self.vae.encode(still)  # [1, C, K, h, w]
        timesteps = flow_timesteps(cfg.steps, cfg.shift, cfg.timesteps)
        return _Chunking(features, still[:, :, :1], reference, timesteps, chunks)

    def _continuity(self, cfg: SamplingConfig, run: _Chunking):
        first = run.reference[:, :, :1]
        if cfg.continuity == "inherit":
            return StepwiseInheritance(cfg.inherit_latents, first, run.timesteps)
        if cfg.continuity == "motion_frames":
            return CleanPrefix(first)
        return NoContinuity()

    def _model_fn(self, reference: torch.Tensor):
        def model_fn(x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
            ref = reference.expand(x.shape[0], -1, -1, -1, -1)  # [B, C, K, h, w]
            return self.dit(x, ref, t, tokens)

        return model_fn

    @torch.no_grad()
    def stream(
        self, image, audio, sample_rate: int, seed: int = 0, progress: StepCallback | None = None, **options
    ) -> Iterator[torch.Tensor]:
        """Yield the video as chunks of frames [n, H, W, 3] float32 in 0..1 on the CPU, in order,
        exactly ceil(seconds * fps) frames in all. `options` override the preset's SamplingConfig."""
        cfg = self.sampling(**options)
        run = self._prepare(image, audio, sample_rate, cfg)
        continuity = self._continuity(cfg, run)
        generator = torch.Generator().manual_seed(seed)
        clip, latent_shape = covered_video_frames(cfg.chunk_latents, self.vae.temporal_stride), run.reference.shape
        model_fn = self._model_fn(run.reference)
        if cfg.cfg_scale != 1.0:
            model_fn = audio_guidance(model_fn, cfg.cfg_scale, self._null_tokens(clip))
        for chunk in run.chunks:
            windows = run.features.windows(chunk.start, chunk.start + clip).to(self.device, self.dtype)
            tokens = self.dit.encode_audio(windows)  # [1, K, M, D]
            noise = torch.randn(latent_shape, generator=generator).to(self.device, self.dtype)

            hook = _prefix_then_report(continuity, progress, chunk.index)
            latent = continuity.finish(
                denoise(model_fn, noise, tokens, run.timesteps, cfg.sampler, generator, before_step=hook)
            )
            video = self.vae.decode(latent).clamp(-1, 1)  # [1, 3, T_c, H, W]
            if cfg.color_correction > 0:
                video = match_colors(video, run.reference_image, cfg.color_correction)
            self._hand_over(continuity, video, cfg)
            frames = rearrange(video[0, :, chunk.emit_from : chunk.emit_to], "c t h w -> t h w c")  # [n, H, W, 3]
            yield ((frames.float() + 1) / 2).cpu()

    def _null_tokens(self, clip: int) -> torch.Tensor:
        """Audio tokens of all-zero wav2vec2 features: the unconditional input of audio CFG."""
        audio = self.config.audio
        silence = torch.zeros(
            1, clip, audio.window, audio.num_hidden_layers, audio.hidden_size, device=self.device, dtype=self.dtype
        )  # [1, T_c, W, L, C]
        return self.dit.encode_audio(silence)  # [1, K, M, D]

    def _hand_over(self, continuity, video: torch.Tensor, cfg: SamplingConfig) -> None:
        if isinstance(continuity, StepwiseInheritance):
            continuity.hand_over()
        elif isinstance(continuity, CleanPrefix):
            tail = covered_video_frames(cfg.motion_latents, self.vae.temporal_stride)
            continuity.hand_over(self.vae.encode(video[:, :, -tail:]))  # [1, C, p, h, w]

    def generate(self, image, audio, sample_rate: int, seed: int = 0, progress: StepCallback | None = None, **options) -> torch.Tensor:
        """The whole video: frames [N, H, W, 3] float32 in 0..1, N = ceil(audio seconds * fps)."""
        return torch.cat(list(self.stream(image, audio, sample_rate, seed=seed, progress=progress, **options)))


def _prefix_then_report(continuity, progress: StepCallback | None, chunk: int):
    """The loop's before_step hook: write the continuity prefix, then report the model's input."""

    def before_step(step: int, x: torch.Tensor) -> torch.Tensor:
        x = continuity.before_step(step, x)
        if progress is not None:
            progress(chunk, step, x)
        return x

    return before_step
