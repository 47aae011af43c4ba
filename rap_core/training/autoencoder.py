"""Training a VAE of the LTX-Video layout from scratch on the synthetic world (the demo preset's).

Clips are rendered on the fly: a random identity whose mouth, eyelids and head move along
random smooth tracks (no speech needed to learn to reconstruct faces). Loss: L1 + MSE between the
clip and the decode of a posterior sample, plus `kl_weight` times the KL divergence to N(0, I).
Afterwards every latent channel's mean and spread over fresh clips are measured and stored in
`latents_mean` / `latents_std`, so `VideoVAE.encode` gives the DiT unit-scale latents.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import save_file
from tqdm import tqdm

from ..config import RAPConfig
from ..models.vae import VideoVAE, build_vae
from ..synthetic import render, sample_identity
from ..synthetic.clip import blink_track, sway_track


@dataclass(frozen=True)
class VAETrainConfig:
    steps: int = 3000
    batch_size: int = 4
    clip_frames: int = 17  # 1 + 8k
    lr: float = 1e-3
    kl_weight: float = 1e-4
    calibration_clips: int = 16
    log_every: int = 50
    seed: int = 0


def _smooth_track(rng: random.Random, frames: int, hold: int = 3) -> torch.Tensor:
    """[T] in 0..1: random levels every `hold` frames, linearly joined."""
    knots = torch.tensor([rng.random() for _ in range(frames // hold + 2)])
    return F.interpolate(knots[None, None], size=frames, mode="linear", align_corners=True)[0, 0]


def motion_clip(seed: int, frames: int, size: int, fps: int = 25) -> torch.Tensor:
    """Identity `seed` moving its mouth, eyelids and head at random -> [T, size, size, 3] in 0..1."""
    rng = random.Random(f"vae:{seed}")
    identity = sample_identity(seed)
    openness, width = _smooth_track(rng, frames), _smooth_track(rng, frames)
    return render(identity, openness, width, blink_track(rng, frames, fps), sway_track(rng, frames), size)


def _videos(seeds: list[int], frames: int, size: int) -> torch.Tensor:
    clips = torch.stack([motion_clip(seed, frames, size) for seed in seeds])  # [B, T, H, W, 3]
    return rearrange(clips * 2 - 1, "b t h w c -> b c t h w")  # [B, 3, T, H, W] in [-1, 1]


def _losses(vae: VideoVAE, video: torch.Tensor, kl_weight: float, generator: torch.Generator) -> dict:
    moments = vae.encoder(video)  # [B, C + 1, F, h, w]
    mean, logvar = moments[:, :-1], moments[:, -1:].clamp(-30.0, 20.0)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)
    recon = vae.decoder(z)  # [B, 3, T, H, W]
    l1, mse = (recon - video).abs().mean(), ((recon - video) ** 2).mean()
    kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).mean()
    return {"total": l1 + mse + kl_weight * kl, "l1": l1, "mse": mse, "kl": kl}


@torch.no_grad()
def calibrate(vae: VideoVAE, seeds: list[int], frames: int, size: int) -> None:
    """Store the per-channel mean and standard deviation of the posterior means of `seeds`' clips."""
    moments = vae.encoder(_videos(seeds, frames, size))  # [B, C + 1, F, h, w]
    z = rearrange(moments[:, :-1], "b c f h w -> c (b f h w)")  # [C, N]
    vae.latents_mean.copy_(z.mean(1))
    vae.latents_std.copy_(z.std(1).clamp_min(1e-4))


def train_vae(config: RAPConfig, out: str | os.PathLike, cfg: VAETrainConfig, progress: bool = True) -> dict:
    """Train `config`'s VAE from scratch; writes out/vae.safetensors and out/vae_log.jsonl."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    vae = build_vae(config).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(cfg.seed)
    size, last = config.height, {}
    for step in tqdm(range(cfg.steps), unit="step", desc="train-vae", disable=not progress):
        seeds = [cfg.seed * 1_000_003 + step * cfg.batch_size + i for i in range(cfg.batch_size)]
        parts = _losses(vae, _videos(seeds, cfg.clip_frames, size), cfg.kl_weight, generator)
        optimizer.zero_grad(set_to_none=True)
        parts["total"].backward()
        optimizer.step()
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            last = {"step": step + 1, **{name: value.item() for name, value in parts.items()}}
            with open(out / "vae_log.jsonl", "a") as log:
                log.write(json.dumps(last) + "\n")
    vae.eval()
    calibrate(vae, [-1 - i for i in range(cfg.calibration_clips)], cfg.clip_frames, size)  # seeds never trained on
    metadata = {"preset": config.name, "train_config": json.dumps(asdict(cfg))}
    save_file({name: t.contiguous() for name, t in vae.state_dict().items()}, out / "vae.safetensors", metadata)
    return last
