"""Streaming memory and latency: 60 s of audio vs 10 s, tiny preset, streamed to an mp4 on disk.

Each length runs in its own child process (so peak RSS is its own); the parent prints both
and the ratio. `rss_growth` is the peak minus the RSS once the models are built, i.e. what
generation itself adds.

    .venv/bin/python benchmarks/stream_memory.py [--preset tiny] [--short 10] [--long 60]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_child(preset: str, seconds: float) -> dict:
    from rap_core.media.container import write_mp4
    from rap_core.pipeline import RAPPipeline

    torch.set_num_threads(2)
    pipe = RAPPipeline.from_preset(preset)
    sample_rate = 16000
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    audio = 0.3 * torch.sin(2 * math.pi * 150 * t) * (0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t))
    image = torch.rand(256, 256, 3, generator=torch.Generator().manual_seed(0))
    base = _rss_mib()
    start, first = time.perf_counter(), None

    def timed(chunks):
        nonlocal first
        for chunk in chunks:
            if first is None:
                first = time.perf_counter() - start
            yield chunk

    with tempfile.TemporaryDirectory() as folder:
        frames = write_mp4(
            os.path.join(folder, "out.mp4"),
            timed(pipe.stream(image, audio, sample_rate)),
            pipe.config.fps,
            audio=audio,
            sample_rate=sample_rate,
        )
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": seconds,
        "frames": frames,
        "peak_rss_mib": peak,
        "rss_growth_mib": peak - base,
        "first_chunk_s": first,
        "total_s": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--short", type=float, default=10.0)
    parser.add_argument("--long", type=float, default=60.0)
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(run_child(args.preset, args.child)))
        return
    results = []
    for seconds in (args.short, args.long):
        out = subprocess.run(
            [sys.executable, __file__, "--preset", args.preset, "--child", str(seconds)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in results:
        print(
            f"{r['seconds']:6.1f} s audio: {r['frames']} frames, peak RSS {r['peak_rss_mib']:.0f} MiB "
            f"(+{r['rss_growth_mib']:.0f} MiB during generation), first chunk {r['first_chunk_s']:.2f} s "
            f"of {r['total_s']:.2f} s total"
        )
    short, long = results
    print(
        f"ratio peak_rss={long['peak_rss_mib'] / short['peak_rss_mib']:.3f} "
        f"rss_growth={long['rss_growth_mib'] / max(short['rss_growth_mib'], 1e-9):.3f} "
        f"first_chunk_fraction={long['first_chunk_s'] / long['total_s']:.4f}"
    )


if __name__ == "__main__":
    main()
