"""Frozen configuration dataclasses and the named presets.

Presets differ only in numbers and modes, never in code paths: `tiny` exercises exactly the
modules `flashhead-lite` and `rap-1.3b` run, at a size that fits a unit test.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from .errors import RAPInputError

AudioMode = Literal["window", "full", "hybrid"]
AudioEncoderKind = Literal["wav2vec2", "mel"]
AudioContextName = Literal["lookahead", "reference-stream", "reference-once"]
Schedule = Literal["uniform", "flashhead"]
FramingPolicy = Literal["face", "centre"]


@dataclass(frozen=True)
class DiTConfig:
    """Wan-1.3B-layout transformer over channel-concatenated (noisy, reference) latents."""

    dim: int = 1536
    num_layers: int = 30
    num_heads: int = 12
    ffn_dim: int = 8960
    freq_dim: int = 256  # sinusoidal timestep width
    in_channels: int = 256  # noisy latent (128) + reference latent (128)
    out_channels: int = 128
    patch_size: tuple[int, int, int] = (1, 1, 1)  # (t, h, w) over latents
    eps: float = 1e-6
    rope_theta: float = 10000.0
    audio_mode: AudioMode = "window"
    # Hybrid blend weight of block i of L: alpha(i) = clamp(alpha_delta + alpha_w * i / (L - 1), 0, 1);
    # the block adds alpha(i)*window + (1 - alpha(i))*full (see models/attention.py).
    alpha_w: float = 1.0
    alpha_delta: float = 0.0
    # Motion-intensity controls added to the timestep embedding (models/intensity.py); zero-initialised,
    # so a checkpoint without them loads and runs unchanged.
    intensity_control: bool = False
    # Face-focused identity cross-attention after every block (models/identity.py); zero-initialised too.
    identity_attention: bool = False

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


@dataclass(frozen=True)
class VAEConfig:
    """LTX-Video 0.9.0 causal video VAE (diffusers `AutoencoderKLLTXVideo` hyper-parameters)."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 128
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: tuple[int, ...] = (4, 3, 3, 3, 4)
    spatio_temporal_scaling: tuple[bool, ...] = (True, True, True, False)
    decoder_block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    decoder_layers_per_block: tuple[int, ...] = (4, 3, 3, 3, 4)
    decoder_spatio_temporal_scaling: tuple[bool, ...] = (True, True, True, False)
    patch_size: int = 4
    patch_size_t: int = 1
    eps: float = 1e-6
    encoder_causal: bool = True
    decoder_causal: bool = False
    # Ours, for training from scratch on a CPU; LTX-Video 0.9.0 is the defaults. Its LayerNorm in the
    # channel-changing shortcuts and pixel-norm before each conv_out drop every position's magnitude
    # from the main path: a small VAE trained with them sat at blurred mean colours for thousands of
    # steps. Without them, and with parameter-free shortcuts around the samplers (2x2x2 mean down,
    # nearest copy up, as in LTX-Video 0.9.1's residual upsampler and DC-AE), it learns in hundreds.
    shortcut_norm: bool = True  # LayerNorm (norm3.*) before a channel-changing shortcut's 1x1x1 conv
    out_norm: bool = True  # pixel-norm before the encoder's and the decoder's conv_out
    residual_sampling: bool = False  # add the 2x2x2 mean / nearest copy of a sampler's input to its output
    # Per stage (of both sides): whether its sampler halves/doubles time too; None: all (0.9.0). A
    # stage that does not is spatial-only, as LTX-Video 0.9.5's "spatial" samplers.
    temporal_scaling: tuple[bool, ...] | None = None

    def scales_time(self, stage: int) -> bool:
        return self.temporal_scaling is None or self.temporal_scaling[stage]

    @property
    def spatial_stride(self) -> int:
        return self.patch_size * 2 ** sum(self.spatio_temporal_scaling)

    @property
    def temporal_stride(self) -> int:
        halvings = sum(scaled and self.scales_time(i) for i, scaled in enumerate(self.spatio_temporal_scaling))
        return self.patch_size_t * 2**halvings


@dataclass(frozen=True)
class AudioConfig:
    """wav2vec2 features at the video rate, per-latent-frame windows, and their projection."""

    sample_rate: int = 16000
    encoder: AudioEncoderKind = "wav2vec2"  # "mel": a fixed log-mel transform, hidden_size mel bands, one layer
    # wav2vec2 (transformers `Wav2Vec2Config` fields; used to build random encoders for tests)
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    # windows (FlashHead: +-2 video frames of context around each frame)
    window: int = 5
    # projection (FlashHead's AudioProjModel)
    intermediate_dim: int = 512
    context_tokens: int = 32
    context_seconds: float = 8.0  # past audio a chunk or segment hears (FlashHead's 8 s streaming cache)
    # "lookahead"'s chunk-independent features (audio_features.py): video frames [jG, (j+1)G) come from
    # one encoder call on the audio of frames [jG - context, (j+1)G + lookahead), silence outside the clip
    segment_frames: int = 25  # G: 1 s at 25 fps
    lookahead_frames: int = 8  # future audio the last frame of a segment sees (one latent frame)


@dataclass(frozen=True)
class SamplingConfig:
    # which stretch of speech the audio encoder hears for each chunk's frames (audio_context.py)
    audio_context: AudioContextName = "lookahead"
    steps: int = 4
    shift: float = 5.0
    # "uniform": `steps` points from 1000 down, 0 excluded; "flashhead": FlashHead's, np.linspace(1000, 1,
    # steps) (with [1000, 500] and [1000, 750, 500, 250] for 2 and 4 steps, where both agree); then shifted
    schedule: Schedule = "uniform"
    timesteps: tuple[float, ...] | None = None  # explicit schedule (0..1000) overrides steps/shift/schedule
    sampler: str = "renoise"  # sampling/steps.py: "euler" (ODE) or FlashHead's distilled x0-then-renoise update
    cfg_scale: float = 1.0  # audio classifier-free guidance; 1.0 = off
    continuity: str = "motion_frames"  # a mode of sampling/continuity.py's CONTINUITIES
    inherit_latents: int = 3  # n for continuity="inherit"
    motion_latents: int = 2  # clean prefix latents for continuity="motion_frames"
    chunk_latents: int = 5  # latent frames per chunk (5 -> 33 video frames)
    # latent frames per chunk of a live talk (live.py), where a frame waits for a chunk of audio; None: chunk_latents
    live_chunk_latents: int | None = None
    # VAE posterior samples (not means) for the reference and motion latents, drawn from the talk's
    # generator in FlashHead's order: the reference first, each chunk's motion latents after its noise
    sample_posterior: bool = False
    color_correction: float = 1.0  # Lab colour matching of decoded frames to the reference (0 = off)
    # audio attention for this run; None keeps the DiT's own (DiTConfig.audio_mode/alpha_w/alpha_delta)
    audio_mode: AudioMode | None = None
    alpha_w: float | None = None
    alpha_delta: float | None = None
    # motion-intensity controls in 0..1 (0.5 = the median training clip); for DiTs with intensity_control
    expression: float = 0.5
    head_motion: float = 0.5


@dataclass(frozen=True)
class RAPConfig:
    name: str
    dit: DiTConfig = field(default_factory=DiTConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    fps: int = 25
    height: int = 512
    width: int = 512
    # how a photo is framed unless a run says otherwise (framing.py): "face" frames the detected face
    # `face_ratio` times its width wide, as the model's training portraits are; "centre" scales the photo
    # to cover the model's size and crops its centre
    framing: FramingPolicy = "face"
    face_ratio: float = 2.0  # FlashHead's face_ratio

    def __post_init__(self) -> None:
        if self.dit.in_channels != 2 * self.vae.latent_channels:
            raise RAPInputError(
                f"Preset '{self.name}': DiT in_channels {self.dit.in_channels} must be twice the "
                f"VAE latent channels {self.vae.latent_channels} (noisy + reference latents)."
            )
        if self.dit.out_channels != self.vae.latent_channels:
            raise RAPInputError(
                f"Preset '{self.name}': DiT out_channels {self.dit.out_channels} must equal the "
                f"VAE latent channels {self.vae.latent_channels}."
            )
        stride = self.vae.spatial_stride
        if self.height % stride or self.width % stride:
            raise RAPInputError(
                f"Preset '{self.name}': size {self.height}x{self.width} must be a multiple of the "
                f"VAE's spatial stride {stride}."
            )

    def replace(self, **changes) -> RAPConfig:
        return replace(self, **changes)


# SoulX-FlashHead-Lite as its authors run it (generate_video.py's defaults): streamed audio, their
# schedule, posterior samples of the VAE, and the photo as given (their --use_face_crop is off by default).
_FLASHHEAD = RAPConfig(
    name="flashhead-lite",
    framing="centre",
    sampling=SamplingConfig(audio_context="reference-stream", schedule="flashhead", sample_posterior=True),
)

_PRESETS: dict[str, RAPConfig] = {
    "flashhead-lite": _FLASHHEAD,
    "rap-1.3b": replace(
        _FLASHHEAD,
        name="rap-1.3b",
        framing="face",
        dit=replace(_FLASHHEAD.dit, audio_mode="hybrid"),
        sampling=SamplingConfig(
            steps=8,
            shift=5.0,
            sampler="euler",
            cfg_scale=5.0,
            continuity="inherit",
            inherit_latents=3,
            chunk_latents=11,
            color_correction=0.0,
        ),
    ),
    "tiny": RAPConfig(
        name="tiny",
        dit=DiTConfig(
            dim=32,
            num_layers=2,
            num_heads=2,
            ffn_dim=64,
            freq_dim=16,
            in_channels=16,
            out_channels=8,
            audio_mode="hybrid",
        ),
        vae=VAEConfig(
            latent_channels=8,
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_block_out_channels=(8, 8, 8, 8),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
        ),
        audio=AudioConfig(
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            conv_dim=(16,) * 7,
            intermediate_dim=32,
            context_tokens=4,
        ),
        sampling=SamplingConfig(
            steps=2, sampler="euler", continuity="inherit", inherit_latents=1, chunk_latents=3, color_correction=0.0
        ),
        height=64,
        width=64,
    ),
    # Trained on the synthetic world (rap_core.training) and shipped in demo/: runs offline on a CPU.
    "demo": RAPConfig(
        name="demo",
        dit=DiTConfig(
            dim=128,
            num_layers=6,
            num_heads=4,
            ffn_dim=512,
            freq_dim=64,
            in_channels=128,
            out_channels=64,
            audio_mode="hybrid",
            intensity_control=True,
            identity_attention=True,
        ),
        vae=VAEConfig(
            latent_channels=64,
            block_out_channels=(16, 32, 64, 64),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_block_out_channels=(16, 32, 64, 64),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
            shortcut_norm=False,
            out_norm=False,
            residual_sampling=True,
            temporal_scaling=(False, False, True, False),  # 32x32x2: see the README's demo model section
        ),
        audio=AudioConfig(encoder="mel", hidden_size=32, num_hidden_layers=1, intermediate_dim=128, context_tokens=4),
        sampling=SamplingConfig(
            steps=4,
            shift=3.0,
            sampler="euler",
            continuity="inherit",
            inherit_latents=1,
            chunk_latents=9,
            color_correction=0.0,
            # live: 0.44 s from audio to frame on 2 CPU cores instead of 0.81 s, lip sync as good (r 0.666 vs
            # 0.671 on 4 held-out 12 s clips); 3 latents lag the sound by 1.5 frames
            live_chunk_latents=5,
        ),
        height=128,
        width=128,
        face_ratio=2.9,  # the synthetic portraits' frame over BlazeFace's face width (median 2.87, 30 identities)
    ),
}


def preset_names() -> list[str]:
    return sorted(_PRESETS)


def get_preset(name: str) -> RAPConfig:
    """Return the frozen config of a named preset."""
    try:
        return _PRESETS[name]
    except KeyError:
        raise RAPInputError(f"Unknown preset '{name}'. Choose one of: {', '.join(preset_names())}.") from None
