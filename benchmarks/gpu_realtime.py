"""Real-time speed of a preset at full size: frames per second, time to first frame, peak memory
and the DiT's model-FLOPs utilisation, end to end through `RAPPipeline.stream`.

Random weights (speed does not depend on them) at the preset's full size; the portrait is random
pixels and the speech random noise under a syllable-rate envelope, `--seconds` long. Everything
`stream` does is timed: audio features, the reference encode, every DiT step (audio CFG batched
with its unconditional pass), continuity and VAE decode of every chunk, until the frames are on the
CPU. A short run of two chunks warms up first.

- fps: video frames / wall seconds (25 is real time); time_to_first_frame_s: until the first
  chunk of frames is on the CPU.
- peak_gpu_memory_gib: torch.cuda.max_memory_allocated over the timed run (null on a CPU).
- mfu: DiT FLOPs of every forward (benchmarks/dit_flops.py) / wall seconds / the device's dense
  peak; mfu_in_dit: the same over the seconds spent inside DiT forwards. The peak is known for
  H100 SXM and H200 in bf16/fp16 (989 TFLOP/s); give --peak-tflops for any other device or dtype
  (else null).

Defaults per preset: flashhead-lite 4 steps, no CFG, motion frames; rap-1.3b audio CFG 5, 8
steps, 11-latent chunks, inherit n=3 (the presets' own settings). `--compile` runs every DiT
block under torch.compile (compiled in the warm-up); a block dynamo cannot compile runs eagerly,
and `compiled_graphs` tells how many compiled. Prints one JSON line.

    .venv/bin/python benchmarks/gpu_realtime.py --preset rap-1.3b [--seconds 20] [--size 512] [--compile]
    .venv/bin/python benchmarks/gpu_realtime.py --device cpu --preset tiny --seconds 2 --size 64   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from dit_flops import dit_forward_flops  # benchmarks/, this script's folder

from rap_core.config import get_preset, preset_names
from rap_core.loading.random_weights import random_audio_encoder, random_dit, random_vae
from rap_core.models.attention import ATTENTION_BACKENDS
from rap_core.pipeline import RAPPipeline
from rap_core.timing import covered_video_frames, video_frame_count

SAMPLE_RATE = 16000
# bf16 (and fp16) dense peak, TFLOP/s, by a substring of torch.cuda.get_device_name(); PCIe and NVL
# H100s differ and are not listed.
PEAK_TFLOPS = (("H200", 989.0), ("H100 80GB HBM3", 989.0), ("H100 SXM", 989.0))


def speech_like(seconds: float, generator: torch.Generator) -> torch.Tensor:
    """[S] mono 16 kHz: noise under a 4 Hz syllable envelope, peak about 0.5."""
    t = torch.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t)
    return 0.25 * envelope * torch.randn(t.shape, generator=generator).clamp(-2, 2)


class DiTMeter:
    """Forward hooks on the DiT: counts forwards, their FLOPs and the time spent inside them
    (CUDA events on a GPU, so nothing waits)."""

    def __init__(self, dit: torch.nn.Module, context_tokens: int):
        self.context_tokens = context_tokens
        self.forwards, self.flops, self._spans, self._start = 0, 0, [], None
        self._hooks = [dit.register_forward_pre_hook(self._before), dit.register_forward_hook(self._after)]

    def _mark(self, device: torch.device):
        if device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _before(self, module, args) -> None:
        x = args[0]  # [B, C, F, h, w]
        alphas = [block.cross_attn.alpha for block in module.blocks]
        self.flops += dit_forward_flops(module.config.dit, alphas, x.shape[0], tuple(x.shape[2:]), self.context_tokens)
        self.forwards += 1
        self._start = self._mark(x.device)

    def _after(self, module, args, output) -> None:
        self._spans.append((self._start, self._mark(output.device)))

    def seconds(self) -> float:
        """Time inside DiT forwards so far (synchronises a GPU)."""
        if self._spans and isinstance(self._spans[0][0], torch.cuda.Event):
            torch.cuda.synchronize()
            return sum(start.elapsed_time(end) for start, end in self._spans) / 1000
        return sum(end - start for start, end in self._spans)

    def reset(self) -> None:
        self.forwards, self.flops, self._spans = 0, 0, []

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()


def build_pipeline(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> RAPPipeline:
    config = get_preset(args.preset)
    size = args.size or config.height
    config = config.replace(height=size, width=size)
    dit = random_dit(config, device=device, dtype=dtype, attention_backend=args.attention)
    vae = random_vae(config, device=device, dtype=dtype)
    return RAPPipeline(config, dit, vae, random_audio_encoder(config, device=device), device=device, dtype=dtype)


def compile_blocks(dit: torch.nn.Module) -> None:
    """torch.compile every DiT block in place; a block dynamo cannot compile runs eagerly instead."""
    torch._dynamo.config.suppress_errors = True
    for block in dit.blocks:
        block.compile()


def peak_tflops(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> float | None:
    if args.peak_tflops is not None:
        return args.peak_tflops
    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        name = torch.cuda.get_device_name(device)
        return next((peak for key, peak in PEAK_TFLOPS if key in name), None)
    return None


def timed_run(pipe: RAPPipeline, image, audio, options: dict, device: torch.device) -> dict:
    """Stream the talk once; frames are counted and dropped (memory stays one chunk)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    frames, first, chunks = 0, None, 0
    start = time.perf_counter()
    for chunk in pipe.stream(image, audio, SAMPLE_RATE, seed=0, **options):  # chunk [n, H, W, 3] on the CPU
        if first is None:
            first = time.perf_counter() - start
        frames, chunks = frames + chunk.shape[0], chunks + 1
    wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "frames": frames,
        "chunks": chunks,
        "wall_s": wall,
        "time_to_first_frame_s": first,
        "peak_gpu_memory_gib": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="rap-1.3b", choices=preset_names())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", choices=("bfloat16", "float16", "float32"), help="default: bfloat16 on a GPU, float32 on a CPU"
    )
    parser.add_argument("--size", type=int, help="output side in pixels (default: the preset's)")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio length")
    parser.add_argument("--steps", type=int, help="denoising steps per chunk (default: the preset's)")
    parser.add_argument("--cfg", type=float, dest="cfg_scale", help="audio CFG scale; 1 = off (default: the preset's)")
    parser.add_argument("--chunk-latents", type=int, help="latent frames per chunk (default: the preset's)")
    parser.add_argument("--attention", default="sdpa", choices=ATTENTION_BACKENDS)
    parser.add_argument("--compile", action="store_true", help="torch.compile the DiT blocks (falls back to eager)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense peak for this dtype, TFLOP/s")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-warmup", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    chosen = (("steps", args.steps), ("cfg_scale", args.cfg_scale), ("chunk_latents", args.chunk_latents))
    options = {name: value for name, value in chosen if value is not None}  # SamplingConfig overrides

    pipe = build_pipeline(args, device, dtype)
    sampling = pipe.sampling(**options)
    if args.compile:
        compile_blocks(pipe.dit)
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(pipe.config.height, pipe.config.width, 3, generator=generator)
    audio = speech_like(args.seconds, generator)
    meter = DiTMeter(pipe.dit, pipe.config.audio.context_tokens)
    if not args.no_warmup:  # two chunks: the first and a continued one
        clip = covered_video_frames(sampling.chunk_latents, pipe.vae.temporal_stride)
        warm_frames = pipe.chunk_plan(2 * clip, **options)[1].start + clip
        timed_run(pipe, image, audio[: warm_frames * SAMPLE_RATE // pipe.config.fps], options, device)
        meter.reset()
    run = timed_run(pipe, image, audio, options, device)
    dit_s, peak = meter.seconds(), peak_tflops(args, device, dtype)
    meter.close()

    tflop = meter.flops / 1e12
    result = {
        "preset": args.preset,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "size": pipe.config.height,
        "audio_s": audio.numel() / SAMPLE_RATE,
        "expected_frames": video_frame_count(audio.numel(), SAMPLE_RATE, pipe.config.fps),
        **run,
        "fps": run["frames"] / run["wall_s"],
        "realtime_factor": run["frames"] / run["wall_s"] / pipe.config.fps,
        "steps": sampling.steps,
        "cfg_scale": sampling.cfg_scale,
        "chunk_latents": sampling.chunk_latents,
        "continuity": sampling.continuity,
        "attention": args.attention,
        "compile": args.compile,
        "compiled_graphs": torch._dynamo.utils.counters["stats"]["unique_graphs"] if args.compile else None,
        "dit_forwards": meter.forwards,
        "dit_tflop": tflop,
        "dit_s": dit_s,
        "achieved_tflops": tflop / run["wall_s"],
        "achieved_tflops_in_dit": tflop / dit_s if dit_s else None,
        "peak_tflops": peak,
        "mfu": tflop / run["wall_s"] / peak if peak else None,
        "mfu_in_dit": tflop / dit_s / peak if peak and dit_s else None,
        "torch": torch.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
