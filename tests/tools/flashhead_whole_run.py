"""Whole-run check of flashhead-lite against SoulX-FlashHead's own generate_video.py.

    .venv/bin/python tests/tools/flashhead_whole_run.py RUN_DIR [stream|once ...]

RUN_DIR holds what a run of the reference code left (tests/golden/flashhead/README.md says how it is
made): its random weights (dit.safetensors with 2 blocks, the LTX-Video VAE, a wav2vec2-base-shaped
encoder), image.png, audio.npy, every random tensor it drew in order (draws_<mode>.pt) and its frames
before the uint8 cast (frames_<mode>.pt, 0..255). Our pipeline runs on the same inputs and weights
with those random tensors handed to its talk generator's draws, in order; the script prints the
relative max-abs difference over the frames both produce (and exits 1 above 1e-4) and our frame count.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from rap_core.config import get_preset
from rap_core.loading.models import load_dit, load_vae, load_wav2vec2
from rap_core.media.container import read_image
from rap_core.pipeline import RAPPipeline

CONTEXTS = {"stream": "reference-stream", "once": "reference-once"}
DRAWS = ("reference latent", "initial noise", "step", "motion latents")  # the tags of the talk's draws
TOLERANCE = 1e-4


def replaying(recorded: list[torch.Tensor]):
    """torch.randn that hands out `recorded` (in order) wherever a generator is given, then, past the
    reference's last chunk (its once mode drops one), draws as usual."""
    randn, queue = torch.randn, list(recorded)

    def draw(*size, generator=None, device=None, dtype=None, **kwargs):
        if generator is None or not queue:
            return randn(*size, generator=generator, device=device, dtype=dtype, **kwargs)
        shape = torch.Size(size[0] if len(size) == 1 and not isinstance(size[0], int) else size)
        tensor = queue.pop(0)
        if tensor.numel() != shape.numel():
            raise RuntimeError(f"draw of {tuple(shape)} but the reference drew {tuple(tensor.shape)} next")
        return tensor.reshape(shape).to(device=device, dtype=dtype or torch.float32)

    return draw, queue


def run(folder: Path, mode: str) -> float:
    config = get_preset("flashhead-lite")
    config = config.replace(dit=dataclasses.replace(config.dit, num_layers=2), height=128, width=128)
    pipe = RAPPipeline(
        config,
        load_dit(folder / "dit.safetensors", config),
        load_vae(folder / "vae.safetensors", config),
        load_wav2vec2(folder / "wav2vec2-base-random"),
    )
    recorded = [tensor for tag, _, tensor in torch.load(folder / f"draws_{mode}.pt") if any(d in tag for d in DRAWS)]
    draw, left = replaying(recorded)
    audio = torch.from_numpy(np.load(folder / "audio.npy"))
    randn, torch.randn = torch.randn, draw
    try:
        ours = pipe.generate(read_image(folder / "image.png"), audio, 16000, audio_context=CONTEXTS[mode]) * 255
    finally:
        torch.randn = randn
    theirs = torch.load(folder / f"frames_{mode}.pt")
    both = min(ours.shape[0], theirs.shape[0])
    difference = ((ours[:both] - theirs[:both]).abs().max() / theirs[:both].abs().max()).item()
    expected = -(-audio.numel() * config.fps // 16000)
    print(
        f"{mode}: ours {ours.shape[0]} frames (ceil(s*25) = {expected}), theirs {theirs.shape[0]}; "
        f"relative max-abs difference over {both} frames: {difference:.3g}; reference draws left unused: {len(left)}"
    )
    return difference if ours.shape[0] == expected and not left else float("inf")


def main(argv: list[str]) -> int:
    folder, modes = Path(argv[0]), argv[1:] or list(CONTEXTS)
    worst = max(run(folder, mode) for mode in modes)
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
