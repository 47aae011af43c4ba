"""LTX-Video 0.9.0 causal video VAE: 32x32 pixels x 8 frames -> one 128-channel latent.

Encoder: 4x4 space-to-depth patchify, causal 3D convs (time padded with copies of the first
frame), pixel-norm pre-activation resnets, stride-2 spatio-temporal downsampling convs, a mid
stack, then `latent_channels` means plus ONE log-variance channel shared by all channels.
Decoder: the mirror image with depth-to-space upsampling and non-causal convs (time padded with
copies of the first and last frame); no timestep conditioning and no noise injection (0.9.0).
Latent frame 0 covers video frame 0; every later latent frame f covers frames 8f-7 .. 8f.
Options beyond 0.9.0 (VAEConfig; the demo preset's): plain channel shortcuts, no norm before
conv_out, parameter-free residual samplers, and spatial-only stages (time stride 2 or 4, not 8).

Our key layout is the original LTX-Video one (`encoder.down_blocks.N`, `decoder.up_blocks.N`,
one flat list of blocks per side) with plain `norm3.*` and the statistics as `latents_mean` /
`latents_std`; `loading/vae_keys.py` converts the diffusers and original layouts to it.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from ..config import RAPConfig, VAEConfig
from ..errors import RAPInputError


class VAEBlock(NamedTuple):
    """One entry of an encoder/decoder block list. `stage` is the diffusers down/up block index
    it belongs to (None for the mid block); `layers` counts resnets of a "res" stack."""

    kind: Literal["res", "channels", "down", "up"]
    stage: int | None
    in_channels: int
    out_channels: int
    layers: int = 0
    temporal: bool = True  # a sampler that halves/doubles time as well as height and width


def encoder_plan(config: VAEConfig) -> list[VAEBlock]:
    """Per stage: resnets, an optional stride-2 downsample, a channel-changing resnet; then the mid stack."""
    channels, blocks = config.block_out_channels, []
    for i, c in enumerate(channels):
        blocks.append(VAEBlock("res", i, c, c, config.layers_per_block[i]))
        if config.spatio_temporal_scaling[i]:
            blocks.append(VAEBlock("down", i, c, c, temporal=config.scales_time(i)))
        out = channels[i + 1] if i + 1 < len(channels) else c
        if out != c:
            blocks.append(VAEBlock("channels", i, c, out))
    blocks.append(VAEBlock("res", None, channels[-1], channels[-1], config.layers_per_block[-1]))
    return blocks


def decoder_plan(config: VAEConfig) -> list[VAEBlock]:
    """The mid stack; then per stage (widest first): a channel-changing resnet, an optional upsample, resnets."""
    channels = config.decoder_block_out_channels[::-1]
    layers = config.decoder_layers_per_block[::-1]
    scaling = config.decoder_spatio_temporal_scaling[::-1]
    stages = len(channels)
    blocks, c = [VAEBlock("res", None, channels[0], channels[0], layers[0])], channels[0]
    for i, out in enumerate(channels):
        if out != c:
            blocks.append(VAEBlock("channels", i, c, out))
        if scaling[i]:
            blocks.append(VAEBlock("up", i, out, out, temporal=config.scales_time(stages - 1 - i)))
        blocks.append(VAEBlock("res", i, out, out, layers[i + 1]))
        c = out
    return blocks


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """RMS-normalise over channels (dim 1), computed in float32."""
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(1, keepdim=True) + eps)).to(x.dtype)


class CausalConv3d(nn.Module):
    """k x k x k conv, zero-padded in space; in time padded by repeating frames: k-1 copies of the
    first frame when causal, else (k-1)//2 copies of the first and of the last frame."""

    def __init__(self, cin, cout, kernel=3, stride=1, causal=True, operations=nn, **factory):
        super().__init__()
        pad = (kernel - 1) // 2
        self.time_pad = (kernel - 1, 0) if causal else (pad, pad)
        self.conv = operations.Conv3d(cin, cout, kernel, stride=stride, padding=(0, pad, pad), **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, T, H, W] -> [B, C', T', H', W']."""
        if any(self.time_pad):
            x = F.pad(x, (0, 0, 0, 0, *self.time_pad), mode="replicate")
        conv = self.conv
        if _onednn_fits(x, conv):
            # PyTorch sends a CPU conv3d whose N*C*T*H is at most 20480 (the deep, small stages) to its
            # slow reference kernel; oneDNN, which it uses for the larger ones, is 3-4x faster there.
            return torch.ops.aten.mkldnn_convolution(
                x, conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups
            )
        return conv(x)


def _onednn_fits(x: torch.Tensor, conv: nn.Module) -> bool:
    """Whether `conv` may run on oneDNN directly: float32 on the CPU, no autograd, and (for ComfyUI's
    layers) no weight patches that its own forward would apply."""
    weight = conv.weight
    return (
        x.device.type == "cpu"
        and weight.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and torch.backends.mkldnn.is_available()
        and not getattr(conv, "weight_function", None)
        and not getattr(conv, "bias_function", None)
    )


class ResBlock(nn.Module):
    """(pixel-norm, SiLU, conv) twice plus a shortcut; a channel change adds a 1x1x1 conv to it, after a
    LayerNorm when `shortcut_norm`."""

    def __init__(self, cin, cout, eps, causal, shortcut_norm=True, operations=nn, **factory):
        super().__init__()
        self.conv1 = CausalConv3d(cin, cout, causal=causal, operations=operations, **factory)
        self.conv2 = CausalConv3d(cout, cout, causal=causal, operations=operations, **factory)
        self.norm3 = self.conv_shortcut = None
        if cin != cout:
            if shortcut_norm:
                self.norm3 = operations.LayerNorm(cin, eps=eps, **factory)
            self.conv_shortcut = operations.Conv3d(cin, cout, 1, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, Cin, T, H, W] -> [B, Cout, T, H, W]."""
        h = self.conv1(F.silu(pixel_norm(x)))
        h = self.conv2(F.silu(pixel_norm(h)))
        if self.norm3 is not None:
            x = self.norm3(x.movedim(1, -1)).movedim(-1, 1)  # LayerNorm over channels
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class ResStack(nn.Module):
    """`layers` resnets of constant width, x [B, C, T, H, W] -> same shape."""

    def __init__(self, channels, layers, eps, causal, operations=nn, **factory):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(channels, channels, eps, causal, operations=operations, **factory) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class Downsample(CausalConv3d):
    """Stride-2 conv in time, height and width: T -> (T+1)/2 for odd T (only height and width when not
    `temporal`). With `residual`, plus the mean of each 2x2x2 (1x2x2) block of the input, time padded in
    front with one copy of the first frame."""

    def __init__(self, channels, causal, residual, temporal=True, operations=nn, **factory):
        stride = (2 if temporal else 1, 2, 2)
        super().__init__(channels, channels, stride=stride, causal=causal, operations=operations, **factory)
        self.residual, self.stride = residual, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, T, H, W] -> [B, C, (T+1)/2 or T, H/2, W/2]."""
        out = super().forward(x)
        if self.residual:
            padded = F.pad(x, (0, 0, 0, 0, self.stride[0] - 1, 0), mode="replicate")  # [B, C, T+1 or T, H, W]
            out = out + F.avg_pool3d(padded, self.stride)
        return out


class DepthToSpace(nn.Module):
    """conv to 8x channels, shuffle them into 2x time/height/width, drop the first frame: T -> 2T-1
    (when not `temporal`: 4x channels into 2x height/width, T frames). With `residual`, plus the input
    copied to each of its 2x2x2 (1x2x2) positions."""

    def __init__(self, channels, causal, residual=False, temporal=True, operations=nn, **factory):
        super().__init__()
        self.pt = 2 if temporal else 1
        self.conv = CausalConv3d(channels, 4 * self.pt * channels, causal=causal, operations=operations, **factory)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, T, H, W] -> [B, C, 2T-1 or T, 2H, 2W]."""
        out = rearrange(
            self.conv(x), "b (c pt ph pw) t h w -> b c (t pt) (h ph) (w pw)", pt=self.pt, ph=2, pw=2
        )  # [B, C, pt*T, 2H, 2W]
        if self.residual:
            out = out + repeat(x, "b c t h w -> b c (t pt) (h ph) (w pw)", pt=self.pt, ph=2, pw=2)
        return out[:, :, self.pt - 1 :]  # latent frame 0 stands for one frame only


def _make_block(block: VAEBlock, config: VAEConfig, causal, operations, factory) -> nn.Module:
    if block.kind == "res":
        return ResStack(block.out_channels, block.layers, config.eps, causal, operations, **factory)
    if block.kind == "channels":
        return ResBlock(
            block.in_channels, block.out_channels, config.eps, causal, config.shortcut_norm, operations, **factory
        )
    if block.kind == "down":
        return Downsample(block.out_channels, causal, config.residual_sampling, block.temporal, operations, **factory)
    return DepthToSpace(block.out_channels, causal, config.residual_sampling, block.temporal, operations, **factory)


class Encoder(nn.Module):
    def __init__(self, config: VAEConfig, operations=nn, **factory):
        super().__init__()
        self.patch, self.out_norm = config.patch_size, config.out_norm
        causal, channels = config.encoder_causal, config.block_out_channels
        self.conv_in = CausalConv3d(
            config.in_channels * self.patch**2, channels[0], causal=causal, operations=operations, **factory
        )
        self.down_blocks = nn.ModuleList(
            _make_block(b, config, causal, operations, factory) for b in encoder_plan(config)
        )
        self.conv_out = CausalConv3d(
            channels[-1], config.latent_channels + 1, causal=causal, operations=operations, **factory
        )

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 3, T, H, W] -> [B, latent_channels + 1, 1 + (T-1)/8, H/32, W/32] (means, shared log-var)."""
        p = self.patch
        x = rearrange(video, "b c t (h ph) (w pw) -> b (c pw ph) t h w", ph=p, pw=p)  # [B, 3*p*p, T, H/p, W/p]
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        return self.conv_out(F.silu(pixel_norm(x) if self.out_norm else x))


class Decoder(nn.Module):
    def __init__(self, config: VAEConfig, operations=nn, **factory):
        super().__init__()
        self.patch, self.out_norm = config.patch_size, config.out_norm
        causal, channels = config.decoder_causal, config.decoder_block_out_channels
        self.conv_in = CausalConv3d(
            config.latent_channels, channels[-1], causal=causal, operations=operations, **factory
        )
        self.up_blocks = nn.ModuleList(
            _make_block(b, config, causal, operations, factory) for b in decoder_plan(config)
        )
        self.conv_out = CausalConv3d(
            channels[0], config.out_channels * self.patch**2, causal=causal, operations=operations, **factory
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, latent_channels, F, h, w] (un-normalised) -> video [B, 3, 1 + 8(F-1), 32h, 32w]."""
        x = self.conv_in(z)
        for block in self.up_blocks:
            x = block(x)
        x = self.conv_out(F.silu(pixel_norm(x) if self.out_norm else x))
        return rearrange(x, "b (c pw ph) t h w -> b c t (h ph) (w pw)", ph=self.patch, pw=self.patch)  # [B, 3, T, H, W]


class VideoVAE(nn.Module):
    """LTX-Video causal VAE with per-channel latent normalisation: encode() gives and decode() takes
    normalised latents, (z - latents_mean) / latents_std."""

    def __init__(self, config: VAEConfig, operations=nn, device=None, dtype=None):
        super().__init__()
        if config.patch_size_t != 1:
            raise RAPInputError(
                f"VAE patch_size_t {config.patch_size_t} is not supported: the LTX-Video VAE maps 1 + 8k "
                "frames to 1 + k latents and needs patch_size_t 1. Fix the preset's VAEConfig."
            )

        def halvings(scaling: tuple[bool, ...]) -> tuple[int, int]:  # (in space, in time)
            return sum(scaling), sum(scaled and config.scales_time(i) for i, scaled in enumerate(scaling))

        if halvings(config.decoder_spatio_temporal_scaling) != halvings(config.spatio_temporal_scaling):
            raise RAPInputError(
                "The VAE decoder must upsample as often as the encoder downsamples, in space and in time; "
                "make decoder_spatio_temporal_scaling count as many True entries as spatio_temporal_scaling, "
                "at stages that temporal_scaling treats alike."
            )
        self.config = config
        factory = dict(device=device, dtype=dtype)
        self.encoder = Encoder(config, operations, **factory)
        self.decoder = Decoder(config, operations, **factory)
        self.register_buffer("latents_mean", torch.zeros(config.latent_channels, **factory))
        self.register_buffer("latents_std", torch.ones(config.latent_channels, **factory))

    @property
    def spatial_stride(self) -> int:
        return self.config.spatial_stride

    @property
    def temporal_stride(self) -> int:
        return self.config.temporal_stride

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = rearrange(self.latents_mean, "c -> c 1 1 1").to(like)  # [C, 1, 1, 1]
        std = rearrange(self.latents_std, "c -> c 1 1 1").to(like)  # [C, 1, 1, 1]
        return mean, std

    def _check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != self.config.in_channels:
            raise RAPInputError(
                f"VAE.encode expects a video [B, {self.config.in_channels}, T, H, W] in [-1, 1], got shape "
                f"{tuple(video.shape)}. Move the colour channels to dim 1 and add batch/time dims."
            )
        frames, height, width = video.shape[2:]
        t, s = self.temporal_stride, self.spatial_stride
        if frames < 1 or (frames - 1) % t:
            below = 1 + max(frames - 1, 0) // t * t
            raise RAPInputError(
                f"VAE.encode got {frames} frames; the LTX-Video VAE needs 1 + {t}k frames (1, {1 + t}, "
                f"{1 + 2 * t}, ...). Trim the clip to {below} or pad it to {below + t} frames."
            )
        for name, size in (("height", height), ("width", width)):
            if size % s or size == 0:
                nearest = " or ".join(str(n) for n in sorted({max(s, size // s * s), (size // s + 1) * s}))
                raise RAPInputError(
                    f"VAE.encode got {name} {size}; it must be a positive multiple of {s}. Resize or crop "
                    f"the video to {nearest}."
                )

    def encode(
        self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """video [B, 3, T, H, W] in [-1, 1] (T = 1 + 8k, H, W multiples of 32)
        -> normalised latents [B, C, 1 + (T-1)/8, H/32, W/32]: the posterior mean, or a posterior
        sample (mean + exp(logvar / 2) * noise from `generator`) when `sample`."""
        self._check_video(video)
        moments = self.encoder(video)  # [B, C + 1, F, h, w]
        z = moments[:, :-1]
        if sample:
            std = torch.exp(0.5 * moments[:, -1:].clamp(-30.0, 20.0))  # one log-var for every channel
            device = generator.device if generator is not None else z.device
            z = z + std * torch.randn(z.shape, generator=generator, device=device, dtype=z.dtype).to(z.device)
        mean, std = self._stats(z)
        return (z - mean) / std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, C, F, h, w] normalised -> video [B, 3, 1 + 8(F-1), 32h, 32w], about [-1, 1]."""
        if latents.ndim != 5 or latents.shape[1] != self.config.latent_channels:
            raise RAPInputError(
                f"VAE.decode expects latents [B, {self.config.latent_channels}, F, h, w], got shape "
                f"{tuple(latents.shape)}. Pass the latents the sampler or VAE.encode produced."
            )
        mean, std = self._stats(latents)
        return self.decoder(latents * std + mean)


def build_vae(config: RAPConfig, device=None, dtype=None, operations=nn) -> VideoVAE:
    """The VAE of `config.vae` with default-initialised weights (load a checkpoint into it)."""
    return VideoVAE(config.vae, operations=operations, device=device, dtype=dtype)
