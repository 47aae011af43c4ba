"""Training a VAE of the LTX-Video layout from scratch on the synthetic world (the demo preset's).

Clips are rendered on the fly: a random identity whose mouth, eyelids and head move along
random smooth tracks (no speech needed to learn to reconstruct faces); each step can add
`image_batch` single frames, which cost 1/17 of a 17-frame clip and show the VAE many more faces.
Loss: L1 + MSE between the clip and the decode of a posterior sample, with the pixels of the
mouth box weighted 1 + `mouth_weight` (the mouth is a few percent of the frame but all of the lip
sync), plus `kl_weight` times the KL divergence to N(0, I). The learning rate warms up linearly over
`warmup` steps, then falls along a cosine to a tenth; gradients are clipped to norm `grad_clip`.
Every `checkpoint_every` steps the model and optimizer go to `vae_state.pt`, and a run with the
same `out` resumes from there (so a long run can span several sittings).
Afterwards every latent channel's mean and spread over fresh clips are measured and stored in
`latents_mean` / `latents_std`, so `VideoVAE.encode` gives the DiT unit-scale latents.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from tqdm import tqdm

from ..config import RAPConfig
from ..models.vae import VideoVAE, build_vae
from ..synthetic import layout, render, sample_identity
from ..synthetic.clip import blink_track, sway_track
from .io import append_log, replace_atomically, save_weights, step_seed


@dataclass(frozen=True)
class VAETrainConfig:
    steps: int = 3000
    batch_size: int = 4
    clip_frames: int = 17  # 1 + 8k
    image_batch: int = 0  # single frames added to every step (the causal VAE codes a first frame alone)
    lr: float = 3e-4
    warmup: int = 100
    grad_clip: float = 1.0
    kl_weight: float = 1e-4
    mouth_weight: float = 4.0
    calibration_clips: int = 16
    log_every: int = 50
    checkpoint_every: int = 250
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
    return render(identity, openness, width, blink_track(rng, frames, fps), sway_track(rng, openness), size)


def _videos(seeds: list[int], frames: int, size: int) -> torch.Tensor:
    clips = torch.stack([motion_clip(seed, frames, size) for seed in seeds])  # [B, T, H, W, 3]
    return rearrange(clips * 2 - 1, "b t h w c -> b c t h w")  # [B, 3, T, H, W] in [-1, 1]


def _lr_factor(step: int, train_config: VAETrainConfig) -> float:
    if step < train_config.warmup:
        return (step + 1) / train_config.warmup
    progress = (step - train_config.warmup) / max(1, train_config.steps - train_config.warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))


def _pixel_weights(seeds: list[int], size: int, mouth_weight: float) -> torch.Tensor:
    """[B, 1, 1, H, W]: 1 + mouth_weight inside each identity's mouth box, 1 elsewhere."""
    weights = torch.ones(len(seeds), 1, 1, size, size)
    for index, seed in enumerate(seeds):
        y0, y1, x0, x1 = layout(sample_identity(seed), size).mouth_box
        weights[index, :, :, y0:y1, x0:x1] += mouth_weight
    return weights


def _losses(
    vae: VideoVAE, video: torch.Tensor, weights: torch.Tensor, kl_weight: float, generator: torch.Generator
) -> dict:
    """video [B, 3, T, H, W], weights [B, 1, 1, H, W] -> the loss and its parts."""
    moments = vae.encoder(video)  # [B, C + 1, F, h, w]
    mean, logvar = moments[:, :-1], moments[:, -1:].clamp(-30.0, 20.0)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)
    error = vae.decoder(z) - video  # [B, 3, T, H, W]
    norm = weights.mean() * error[:, :1].numel()  # weighted mean: sum(w * e) / sum(w) per channel
    l1, mse = (weights * error.abs()).sum() / (3 * norm), (weights * error**2).sum() / (3 * norm)
    kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).mean()
    return {"total": l1 + mse + kl_weight * kl, "l1": l1, "mse": mse, "kl": kl}


@torch.no_grad()
def calibrate(vae: VideoVAE, seeds: list[int], frames: int, size: int) -> None:
    """Store the per-channel mean and standard deviation of the posterior means of `seeds`' clips."""
    moments = vae.encoder(_videos(seeds, frames, size))  # [B, C + 1, F, h, w]
    z = rearrange(moments[:, :-1], "b c f h w -> c (b f h w)")  # [C, N]
    vae.latents_mean.copy_(z.mean(1))
    vae.latents_std.copy_(z.std(1).clamp_min(1e-4))


def train_vae(config: RAPConfig, out: str | os.PathLike, train_config: VAETrainConfig, progress: bool = True) -> dict:
    """Train `config`'s VAE from scratch, or resume from out/vae_state.pt; writes out/vae.safetensors
    and out/vae_log.jsonl. Step s draws the same clips and noise whether or not the run was resumed."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(train_config.seed)
    vae = build_vae(config).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=train_config.lr, weight_decay=0.0)
    start, state_path = 0, out / "vae_state.pt"
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step + start, train_config))
    size, last = config.height, {}
    for step in tqdm(
        range(start, train_config.steps),
        initial=start,
        total=train_config.steps,
        unit="step",
        desc="train-vae",
        disable=not progress,
    ):
        per_step = train_config.batch_size + train_config.image_batch
        seeds = [step_seed(train_config.seed, step * per_step + i) for i in range(per_step)]
        generator = torch.Generator().manual_seed(step_seed(train_config.seed, step))
        optimizer.zero_grad(set_to_none=True)
        batches = [
            ("", seeds[: train_config.batch_size], train_config.clip_frames),
            ("image_", seeds[train_config.batch_size :], 1),
        ]
        logged = {}
        for prefix, part, frames in (batch for batch in batches if batch[1]):
            weights = _pixel_weights(part, size, train_config.mouth_weight)
            parts = _losses(vae, _videos(part, frames, size), weights, train_config.kl_weight, generator)
            (len(part) / per_step * parts["total"]).backward()
            logged |= {prefix + name: value.item() for name, value in parts.items()}
        torch.nn.utils.clip_grad_norm_(vae.parameters(), train_config.grad_clip)
        optimizer.step()
        schedule.step()
        done = step + 1
        if done % train_config.log_every == 0 or done == train_config.steps:
            last = {"step": done, **logged}
            append_log(out / "vae_log.jsonl", last)
        if done % train_config.checkpoint_every == 0 or done == train_config.steps:
            state = {"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "step": done}
            replace_atomically(state_path, partial(torch.save, state))
    vae.eval()
    calibrate(
        vae, [-1 - i for i in range(train_config.calibration_clips)], train_config.clip_frames, size
    )  # seeds never trained on
    save_weights(out / "vae.safetensors", vae.state_dict(), config.name, train_config.steps, train_config)
    return last
