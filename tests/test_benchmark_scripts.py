"""The benchmark scripts run and report what they claim: gpu_realtime.py on a CPU at tiny size,
cpu_compare.py at a very small size (outputs match diffusers; speed is not asserted here), and
the analytic DiT FLOP count equals torch's FLOP counter."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rap_core.config import get_preset
from rap_core.models.dit import build_dit

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from dit_flops import dit_forward_flops  # noqa: E402  (from benchmarks/, put on the path above)


def run_script(name: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=BENCHMARKS.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def realtime(*args: str) -> dict:
    out = run_script(
        "gpu_realtime.py",
        "--device",
        "cpu",
        "--preset",
        "tiny",
        "--seconds",
        "2",
        "--size",
        "64",
        "--threads",
        "1",
        *args,
    )
    return json.loads(out.strip().splitlines()[-1])


def test_gpu_realtime_runs_on_a_cpu_and_reports_the_talk():
    plain = realtime("--peak-tflops", "0.5")
    guided = realtime("--cfg", "3", "--no-warmup")
    tiny = get_preset("tiny").sampling
    for result in (plain, guided):
        assert result["frames"] == result["expected_frames"] == math.ceil(2 * 25)
        assert result["fps"] > 0 and result["fps"] == pytest.approx(result["frames"] / result["wall_s"])
        assert 0 < result["time_to_first_frame_s"] < result["wall_s"]
        assert result["peak_gpu_memory_gib"] is None  # a CPU has none
        assert (result["device"], result["dtype"], result["size"]) == ("cpu", "float32", 64)
        assert result["chunks"] == 4  # 17 frames, then 16 new frames per chunk (inherit n=1 of 3 latents)
        assert result["dit_forwards"] == result["chunks"] * tiny.steps  # CFG is batched: still one forward a step
        assert 0 < result["dit_s"] < result["wall_s"]
    assert plain["mfu"] == pytest.approx(plain["achieved_tflops"] / 0.5)
    assert guided["mfu"] is None  # no known peak for a CPU
    assert (plain["cfg_scale"], guided["cfg_scale"]) == (1.0, 3.0)
    assert guided["dit_tflop"] == pytest.approx(2 * plain["dit_tflop"])  # conditional + unconditional rows


def test_cpu_compare_matches_diffusers_outputs():
    out = run_script(
        "cpu_compare.py",
        "--threads",
        "1",
        "--size",
        "64",
        "--latent-frames",
        "2",
        "--reps",
        "1",
        "--dit-dim",
        "128",
        "--dit-layers",
        "2",
        "--dit-ffn",
        "256",
        "--vae-widths",
        "8",
        "16",
        "32",
        "32",
    )
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(r"ratio dit=(\S+) vae=(\S+) maxdiff=(\S+)", last)
    assert match, out
    dit_ratio, vae_ratio, maxdiff = map(float, match.groups())
    assert dit_ratio > 0 and vae_ratio > 0
    assert maxdiff < 1e-4
    assert "dit: ours" in out and "vae: ours" in out


@pytest.mark.parametrize("patch_size", [(1, 1, 1), (1, 2, 2)])
@torch.no_grad()
def test_dit_flop_count_equals_torch_flop_counter(patch_size):
    # Three hybrid blocks: alpha 0 (full only), 0.5 (both branches), 1 (window only). The math
    # backend runs attention as matmuls, which the counter sees.
    tiny = get_preset("tiny")
    config = tiny.replace(dit=replace(tiny.dit, num_layers=3, patch_size=patch_size))
    model = build_dit(config, attention_backend="math").eval()
    alphas = [block.cross_attn.alpha for block in model.blocks]
    assert alphas == [0.0, 0.5, 1.0]
    batch, grid, tokens = 2, (3, 4, 6), tiny.audio.context_tokens
    x = torch.randn(batch, tiny.vae.latent_channels, *grid)  # [B, C, F, h, w]
    audio = torch.randn(batch, grid[0], tokens, tiny.dit.dim)  # [B, F, M, D]
    with FlopCounterMode(display=False) as counter:
        model(x, x, torch.tensor([500.0, 300.0]), audio)
    assert dit_forward_flops(config.dit, alphas, batch, grid, tokens) == counter.get_total_flops() > 0
