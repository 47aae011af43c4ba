"""The training loop: one process, or several through `torchrun` (DDP: every rank holds the
whole model), AdamW, EMA, checkpoint and resume, a progress bar and a loss log.

Every rank draws its own windows and noise from a generator seeded by (seed, rank, step), so a
resumed run continues exactly as an uninterrupted one. Rank 0 writes `out/state.pt` (resume),
`out/dit.safetensors` (the EMA weights) and `out/log.jsonl` (one line per logged step; at every
checkpoint it also records a digest of each replica's weights, which must all agree under DDP).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..config import RAPConfig
from ..loading.models import load_dit
from ..models.dit import RAPTransformer, build_dit
from ..sampling.schedule import noised
from .data import ClipSet, TrainingBatch
from .ema import EMA
from .io import append_log, replace_atomically, save_weights, step_seed
from .objective import LossParts, rap_loss, sample_timesteps


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    batch_size: int = 4
    lr: float = 2e-4
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    beta: float = 0.5  # probability of a static-start window
    face_weight: float = 0.5  # lambda
    motion_weight: float = 0.5  # mu
    lip_weight: float = 0.0  # mouth-box term: > 0 for a lip-focused second stage (FantasyTalking)
    audio_dropout: float = 0.1  # share of samples trained without audio (for audio CFG)
    shift: float = 5.0
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    init: str | None = None  # DiT weights a fresh run starts from (fine-tuning; new optional branches start silent)


class Denoiser(nn.Module):
    """What DDP wraps: audio windows -> tokens -> the DiT's velocity, in one forward."""

    def __init__(self, dit: RAPTransformer):
        super().__init__()
        self.dit = dit

    def forward(
        self,
        x: torch.Tensor,
        ref: torch.Tensor,
        t: torch.Tensor,
        windows: torch.Tensor,
        intensity: torch.Tensor,
        face: torch.Tensor,
    ) -> torch.Tensor:
        """x, ref [B, C, K, h, w]; t [B] in 0..1000; windows [B, T, W, L, Ca]; intensity [B, 2] and face
        [B, C, 1, h, w] (used by a DiT with those branches) -> velocity [B, C, K, h, w]."""
        return self.dit(x, ref, t, self.dit.encode_audio(windows), intensity, face)


def _distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return rank, world, device


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().float().cpu()


def _loss(model: nn.Module, batch: TrainingBatch, train_config: TrainConfig, generator: torch.Generator) -> LossParts:
    size = batch.latents.shape[0]
    t = sample_timesteps(size, train_config.shift, generator).to(batch.latents.device)
    noise = torch.randn(batch.latents.shape, generator=generator).to(batch.latents)
    x_t = noised(batch.latents, t.to(batch.latents).view(-1, 1, 1, 1, 1), noise)  # t: [B, 1, 1, 1, 1]
    target = noise - batch.latents  # the velocity
    keep = (torch.rand(size, generator=generator) >= train_config.audio_dropout).to(batch.audio_windows)
    windows = batch.audio_windows * keep.view(-1, 1, 1, 1, 1)  # dropped samples see all-zero features
    v = model(x_t, batch.reference, t * 1000, windows, batch.intensity, batch.face)
    return rap_loss(
        v,
        target,
        batch.face_mask,
        train_config.face_weight,
        train_config.motion_weight,
        batch.mouth_mask,
        train_config.lip_weight,
    )


def train(
    config: RAPConfig, data: ClipSet, out: str | os.PathLike, train_config: TrainConfig, progress: bool = True
) -> dict:
    """Train the DiT of `config` on `data`, resuming from `out/state.pt` if present. Returns the
    last logged losses."""
    rank, world, device = _distributed()
    out = Path(out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(train_config.seed)
    dit = build_dit(config, device=device, dtype=torch.float32).train()
    state_path = out / "state.pt"
    if train_config.init is not None and not state_path.exists():
        dit.load_state_dict(load_dit(train_config.init, config, dtype=torch.float32).state_dict())
    ema = EMA(dit, train_config.ema_decay)
    optimizer = torch.optim.AdamW(dit.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    start = 0
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        dit.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = train_config.lr  # this run's rate, so a resumed run can go on at a lower one
        start = int(state["step"])
    model: nn.Module = DistributedDataParallel(Denoiser(dit)) if world > 1 else Denoiser(dit)
    stride, audio_window = config.vae.temporal_stride, config.audio.window
    window = config.sampling.chunk_latents
    bar = tqdm(total=train_config.steps, initial=start, unit="step", desc="train", disable=not progress or rank != 0)
    last: dict = {}
    for step in range(start, train_config.steps):
        seed = step_seed(train_config.seed, rank, step) % 2**63  # within a generator's seed range
        generator = torch.Generator().manual_seed(seed)
        batch = data.batch(generator, train_config.batch_size, window, train_config.beta, audio_window, stride).to(
            device
        )
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            parts = _loss(model, batch, train_config, generator)
        optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        norm = torch.nn.utils.clip_grad_norm_(dit.parameters(), train_config.grad_clip)
        optimizer.step()
        ema.update(dit)
        bar.update(1)
        done = step + 1
        if done % train_config.log_every == 0 or done == train_config.steps:
            last = {
                "step": done,
                "loss": parts.total.item(),
                "flow": parts.flow.item(),
                "face": parts.face.item(),
                "motion": parts.motion.item(),
                "lip": parts.lip.item(),
                "grad_norm": float(_full(norm)),
            }
            bar.set_postfix(loss=f"{last['loss']:.4f}")
            if done % train_config.checkpoint_every == 0 or done == train_config.steps:
                last["replica_digests"] = _replica_digests(dit, world)
                _checkpoint(out, rank, dit, ema, optimizer, done, train_config, config)
            if rank == 0:
                append_log(out / "log.jsonl", last)
    bar.close()
    if dist.is_initialized():
        dist.barrier()
    return last


def _replica_digests(dit: nn.Module, world: int) -> list[list[float]]:
    """[sum, sum of squares] of each replica's weights, one entry per rank."""
    with torch.no_grad():
        params = [_full(p).double() for p in dit.parameters()]
        digest = torch.stack([sum(p.sum() for p in params), sum((p * p).sum() for p in params)])  # [2]
    if world == 1:
        return [digest.tolist()]
    gathered = [torch.zeros_like(digest) for _ in range(world)]
    dist.all_gather(gathered, digest)
    return [g.tolist() for g in gathered]


def _checkpoint(
    out: Path, rank: int, dit: nn.Module, ema: EMA, optimizer, step: int, train_config: TrainConfig, config: RAPConfig
) -> None:
    model = {name: _full(p) for name, p in dit.state_dict().items()}
    shadow = {name: _full(p) for name, p in ema.state_dict().items()}
    if rank != 0:
        return
    state = {"model": model, "ema": shadow, "optimizer": optimizer.state_dict(), "step": step}
    replace_atomically(out / "state.pt", partial(torch.save, state))
    save_weights(out / "dit.safetensors", shadow, config.name, step, train_config)
