"""Side by side on a CPU: our DiT and VAE decode against diffusers' on the same weights and inputs.

In one process, float32, under torch.inference_mode, SDPA attention on both sides:
- DiT: `rap_core.models.dit` (audio_mode "full", the mode diffusers' plain cross-attention
  computes) against `WanTransformer3DModel` with its text projection bypassed, so the same audio
  tokens reach both cross-attentions. The Wan-1.3B layout at reduced width and depth.
- VAE decode: `VideoVAE.decode` (LTX-Video 0.9.0 options: LayerNorm shortcuts, out-norm, no
  residual samplers) against `AutoencoderKLLTXVideo.decode` of the 0.9.0 architecture, 0.9.0
  depth, widths `--vae-widths`.

diffusers' weights are random; ours are copied from them through `rap_core.loading`'s key
converters. After a warm-up each rep times both models, alternating which goes first. The report
gives the median seconds of each, the ratio ours / diffusers (at most 1.0: ours is no slower) and
the largest absolute difference of the outputs, and ends with one line

    ratio dit=<ours/diffusers> vae=<ours/diffusers> maxdiff=<largest |ours - diffusers|>

    .venv/bin/python benchmarks/cpu_compare.py [--threads N] [--reps 5] [--size 256] [--latent-frames 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from diffusers import AutoencoderKLLTXVideo, WanTransformer3DModel
from torch import nn

from rap_core.config import DiTConfig, VAEConfig, get_preset
from rap_core.loading.dit_keys import convert_dit_state_dict
from rap_core.loading.strict import load_state_dict_strict
from rap_core.loading.vae_keys import convert_vae_state_dict
from rap_core.models.dit import build_dit
from rap_core.models.vae import build_vae

LTX_090 = {  # diffusers AutoencoderKLLTXVideo arguments of the 0.9.0 architecture, widths aside
    "layers_per_block": (4, 3, 3, 3, 4),
    "decoder_layers_per_block": (4, 3, 3, 3, 4),
    "spatio_temporal_scaling": (True, True, True, False),
    "decoder_spatio_temporal_scaling": (True, True, True, False),
    "decoder_inject_noise": (False,) * 5,
    "timestep_conditioning": False,
    "encoder_causal": True,
    "decoder_causal": False,
}


@torch.no_grad()
def randomize(module: nn.Module, generator: torch.Generator) -> None:
    """Random weights with unit-scale activations: N(0, 1/fan_in) matrices, N(1, 0.2) norm scales
    (names with "norm"), N(0, 0.2) other vectors and tables."""
    for name, p in module.named_parameters():
        if p.ndim > 1 and p.shape[0] > 1:
            p.copy_(torch.randn(p.shape, generator=generator) * p[0].numel() ** -0.5)
        else:
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2 + (1.0 if "norm" in name else 0.0))


def dit_pair(args: argparse.Namespace, generator: torch.Generator):
    """-> (ours, diffusers, our inputs, diffusers' inputs): a Wan-layout DiT at `--dit-*` sizes on a
    [1, 128, latent_frames, size/32, size/32] latent (patch 1, as FlashHead)."""
    base = get_preset("flashhead-lite")
    dit = DiTConfig(
        dim=args.dit_dim,
        num_layers=args.dit_layers,
        num_heads=args.dit_dim // 128,
        ffn_dim=args.dit_ffn,
        audio_mode="full",
    )
    config = base.replace(dit=dit)
    reference = WanTransformer3DModel(
        patch_size=dit.patch_size,
        num_attention_heads=dit.num_heads,
        attention_head_dim=dit.head_dim,
        in_channels=dit.in_channels,
        out_channels=dit.out_channels,
        text_dim=dit.dim,
        freq_dim=dit.freq_dim,
        ffn_dim=dit.ffn_dim,
        num_layers=dit.num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=dit.eps,
    ).eval()
    reference.condition_embedder.text_embedder = nn.Identity()  # audio tokens go straight to attn2
    randomize(reference, generator)
    ours = build_dit(config).eval()
    randomize(ours.audio_proj, generator)  # ours only; the timed forward takes tokens, not windows
    state = dict(reference.state_dict())
    state.update({k: v for k, v in ours.state_dict().items() if k.startswith("audio_proj.")})
    load_state_dict_strict(ours, convert_dit_state_dict(state, config), "DiT")

    side, frames, tokens = args.size // 32, args.latent_frames, base.audio.context_tokens
    x = torch.randn(1, dit.out_channels, frames, side, side, generator=generator)  # [B, C, F, h, w]
    ref = torch.randn(1, dit.out_channels, frames, side, side, generator=generator)  # [B, C, F, h, w]
    audio = torch.randn(1, frames, tokens, dit.dim, generator=generator)  # [B, F, M, D]
    timestep = torch.tensor([625.0])
    ours_in = (x, ref, timestep, audio)
    theirs_in = (torch.cat([x, ref], dim=1), timestep, audio.flatten(1, 2))  # [B, 2C, F, h, w], [B, F*M, D]
    return ours, reference, ours_in, theirs_in


def vae_pair(args: argparse.Namespace, generator: torch.Generator):
    """-> (ours, diffusers, our latents, diffusers' latents): the 0.9.0 VAE at `--vae-widths`,
    decoding [1, 128, latent_frames, size/32, size/32]."""
    widths = tuple(args.vae_widths)
    vae = VAEConfig(
        block_out_channels=widths,
        decoder_block_out_channels=widths,
        shortcut_norm=True,
        out_norm=True,
        residual_sampling=False,  # LTX-Video 0.9.0
    )
    config = get_preset("flashhead-lite").replace(vae=vae)
    reference = AutoencoderKLLTXVideo(
        latent_channels=vae.latent_channels, block_out_channels=widths, decoder_block_out_channels=widths, **LTX_090
    ).eval()
    randomize(reference, generator)
    with torch.no_grad():
        reference.latents_mean.normal_(generator=generator)
        reference.latents_std.uniform_(0.5, 2.0, generator=generator)
    ours = build_vae(config).eval()
    load_state_dict_strict(ours, convert_vae_state_dict(reference.state_dict(), config), "VAE")
    side = args.size // 32
    latents = torch.randn(1, vae.latent_channels, args.latent_frames, side, side, generator=generator)  # normalised
    mean = reference.latents_mean.view(-1, 1, 1, 1)  # [C, 1, 1, 1]
    std = reference.latents_std.view(-1, 1, 1, 1)  # [C, 1, 1, 1]
    return ours, reference, latents, latents * std + mean  # diffusers' decode takes un-normalised latents


def time_pair(ours: Callable[[], torch.Tensor], theirs: Callable[[], torch.Tensor], reps: int, warmup: int):
    """Seconds of each per rep (`reps` reps, alternating which runs first) and one output of each."""
    for _ in range(warmup):
        out_ours, out_theirs = ours(), theirs()
    times = {"ours": [], "theirs": []}
    runs = (("ours", ours), ("theirs", theirs))
    for rep in range(reps):
        for name, fn in runs if rep % 2 == 0 else runs[::-1]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times["ours"], times["theirs"], out_ours, out_theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads (all cores)")
    parser.add_argument("--reps", type=int, default=5, help="timed reps per model after the warm-up")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--size", type=int, default=256, help="video side in pixels (latent side = size / 32)")
    parser.add_argument("--latent-frames", type=int, default=3, help="latent frames (video frames 1 + 8(F-1))")
    parser.add_argument("--dit-dim", type=int, default=512, help="DiT width, a multiple of 128 (Wan's head size)")
    parser.add_argument("--dit-layers", type=int, default=4)
    parser.add_argument("--dit-ffn", type=int, default=3072)
    parser.add_argument("--vae-widths", type=int, nargs=4, default=(32, 64, 128, 128))
    parser.add_argument("--only", choices=("dit", "vae"), help="time one network (the ratio line needs both)")
    args = parser.parse_args()
    if args.size % 32 or args.size < 32 or args.dit_dim % 128:
        parser.error("--size must be a positive multiple of 32 and --dit-dim a multiple of 128")
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), float32, size {args.size}, "
        f"{args.latent_frames} latent frames, {args.reps} reps"
    )
    results = {}
    with torch.inference_mode():
        if args.only in (None, "dit"):
            ours, theirs, ours_in, theirs_in = dit_pair(args, generator)
            results["dit"] = time_pair(
                lambda: ours(*ours_in), lambda: theirs(*theirs_in, return_dict=False)[0], args.reps, args.warmup
            )
            del ours, theirs
        if args.only in (None, "vae"):
            ours, theirs, ours_in, theirs_in = vae_pair(args, generator)
            results["vae"] = time_pair(
                lambda: ours.decode(ours_in), lambda: theirs.decode(theirs_in).sample, args.reps, args.warmup
            )
    ratios, diffs = {}, {}
    for name, (ours_s, theirs_s, out_ours, out_theirs) in results.items():
        ratios[name] = statistics.median(ours_s) / statistics.median(theirs_s)
        paired = sorted(a / b for a, b in zip(ours_s, theirs_s))  # each rep's two runs were back to back
        diffs[name] = (out_ours - out_theirs).abs().max().item()
        print(
            f"{name}: ours {statistics.median(ours_s):.4f} s, diffusers {statistics.median(theirs_s):.4f} s "
            f"(medians of {args.reps}), ratio {ratios[name]:.3f} (per rep {paired[0]:.3f}..{paired[-1]:.3f}), "
            f"output {tuple(out_ours.shape)}, max |diff| {diffs[name]:.2e} "
            f"(output max |x| {out_theirs.abs().max().item():.2f})"
        )
    if len(results) == 2:
        print(f"ratio dit={ratios['dit']:.3f} vae={ratios['vae']:.3f} maxdiff={max(diffs.values()):.2e}")


if __name__ == "__main__":
    main()
