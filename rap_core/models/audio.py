"""wav2vec2 speech features at the video frame rate, and the per-frame context windows.

FlashHead's recipe (facebook/wav2vec2-base-960h, fp32):
1. normalise each clip to zero mean and unit variance (the 960h preprocessor's `do_normalize`);
2. run the CNN feature encoder (one vector per 20 ms, 50 Hz);
3. resample those vectors linearly (align_corners=True) to one per video frame, *before* the
   transformer, so attention sees the video's time grid;
4. feature projection and transformer encoder, keeping every layer's output.
Then every video frame gets the features of frames i-2..i+2 (edge-replicated at the ends).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2Model

from ..checks import check_window
from ..config import AudioConfig
from ..errors import CheckpointError, RAPInputError
from .mel import MelEncoder

WAV2VEC2_REPO = "facebook/wav2vec2-base-960h"
NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor's variance epsilon


def _receptive_field(config: Wav2Vec2Config) -> int:
    """Samples the CNN needs for one output vector (400 = 25 ms for wav2vec2-base at 16 kHz)."""
    field, jump = 1, 1
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        field, jump = field + (kernel - 1) * jump, jump * stride
    return field


class Wav2Vec2Encoder(nn.Module):
    """A transformers `Wav2Vec2Model` run with FlashHead's recipe (see the module docstring).

    The model must have wav2vec2-base's layout (post-norm encoder, no adapter); weights may be
    any such checkpoint. Input audio must already be mono at 16 kHz (`rap_core.media.normalise.audio_to_mono`).
    """

    def __init__(self, model: Wav2Vec2Model):
        super().__init__()
        config = model.config
        if config.do_stable_layer_norm or config.add_adapter:
            raise CheckpointError(
                "This wav2vec2 model uses a pre-norm encoder or an adapter (a wav2vec2-large style "
                f"layout); expected the wav2vec2-base layout of '{WAV2VEC2_REPO}'. Use that model."
            )
        self.model = model
        self.min_samples = _receptive_field(config)

    def cnn_features(self, waveform: torch.Tensor, num_frames: int) -> torch.Tensor:
        """waveform [B, S] mono 16 kHz -> CNN features [B, num_frames, D] on the video time grid
        (steps 1-3: per-clip normalisation, CNN, linear resampling with align_corners=True)."""
        if waveform.ndim != 2:
            raise RAPInputError(
                f"The audio encoder takes mono audio shaped [batch, samples]; got shape {tuple(waveform.shape)}."
            )
        if waveform.shape[1] < self.min_samples:
            raise RAPInputError(
                f"The audio is {waveform.shape[1]} samples long; wav2vec2 needs at least {self.min_samples} "
                "samples (25 ms at 16 kHz). Give a longer clip."
            )
        if num_frames < 1:
            raise RAPInputError(f"num_frames must be at least 1, got {num_frames}.")
        audio = waveform.float()
        audio = (audio - audio.mean(1, keepdim=True)) / torch.sqrt(audio.var(1, keepdim=True, correction=0) + NORM_EPS)
        dtype = self.model.feature_projection.projection.weight.dtype
        cnn = self.model.feature_extractor(audio.to(dtype))  # [B, D, N], N vectors at 50 Hz
        cnn = F.interpolate(cnn, size=num_frames, mode="linear", align_corners=True)  # [B, D, T]
        return rearrange(cnn, "b d t -> b t d")  # [B, T, D]

    def encode(self, cnn: torch.Tensor) -> torch.Tensor:
        """CNN features [B, T, D] -> every transformer layer's output [B, T, L, C] (step 4)."""
        hidden, _ = self.model.feature_projection(cnn)  # [B, T, C]
        encoder = self.model.encoder
        hidden = encoder.dropout(encoder.layer_norm(hidden + encoder.pos_conv_embed(hidden)))  # [B, T, C]
        layers = []
        for layer in encoder.layers:
            out = layer(hidden)
            hidden = out[0] if isinstance(out, tuple) else out  # transformers 4.x layers return a tuple
            layers.append(hidden)
        return torch.stack(layers, dim=2)  # [B, T, L, C]

    def last_hidden_state(self, waveform: torch.Tensor) -> torch.Tensor:
        """waveform [B, S] mono 16 kHz -> the last layer's output [B, N, C] at the CNN's own rate
        (one vector per 20 ms), as FantasyTalking uses it: step 3 resamples to the same length."""
        vectors = int(self.model._get_feat_extract_output_lengths(waveform.shape[1]))
        return self.encode(self.cnn_features(waveform, vectors))[:, :, -1]

    def forward(self, waveform: torch.Tensor, num_frames: int) -> torch.Tensor:
        """waveform [B, S] mono 16 kHz -> features [B, num_frames, L, C], L transformer layers of width C.
        Every clip of the batch is normalised on its own, so each gives what it would alone."""
        return self.encode(self.cnn_features(waveform, num_frames))


def frame_windows(features: torch.Tensor, window: int = 5) -> torch.Tensor:
    """features [B, T, L, C] -> [B, T, W, L, C]: frames i-W//2 .. i+W//2 around every frame i,
    indices clamped to 0..T-1 (the first and last frames repeat at the edges)."""
    check_window(window)
    frames = features.shape[1]
    offsets = torch.arange(window, device=features.device) - window // 2  # [W]
    index = (torch.arange(frames, device=features.device)[:, None] + offsets).clamp(0, frames - 1)  # [T, W]
    return features[:, index]  # [B, T, W, L, C]


def wav2vec2_config(audio: AudioConfig) -> Wav2Vec2Config:
    """The transformers config of a wav2vec2-base-layout model with `audio`'s sizes."""
    return Wav2Vec2Config(
        hidden_size=audio.hidden_size,
        num_hidden_layers=audio.num_hidden_layers,
        num_attention_heads=audio.num_attention_heads,
        intermediate_size=audio.intermediate_size,
        conv_dim=audio.conv_dim,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
    )


def build_wav2vec2(audio: AudioConfig, device=None, dtype=None) -> Wav2Vec2Encoder:
    """A randomly initialised encoder with `audio`'s sizes (tests and the tiny preset)."""
    return Wav2Vec2Encoder(Wav2Vec2Model(wav2vec2_config(audio))).eval().to(device=device, dtype=dtype)


# Either audio encoder a preset may use (`AudioConfig.encoder`): (waveform [B, S], frames) -> [B, frames, L, C].
SpeechEncoder = Wav2Vec2Encoder | MelEncoder


def build_audio_encoder(audio: AudioConfig, device=None) -> SpeechEncoder:
    """`audio.encoder`'s encoder: the fixed mel transform, or a randomly initialised wav2vec2."""
    if audio.encoder == "mel":
        return MelEncoder(audio).to(device)
    return build_wav2vec2(audio, device=device)
