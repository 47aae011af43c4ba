"""Real time on a CPU: the demo preset makes 10 s of 25 fps video (audio features, sampling and
VAE decode, everything `generate` does) and the wall time is compared with the audio's length.

The speech is held-out synthetic speech and the portrait an unseen synthetic face, as in
`python -m rap_core eval`. One short warm-up run comes first, then `--runs` timed runs; the
report gives each run's time, its real-time factor (wall seconds / audio seconds) and the
median factor; at most 1.0 is real time.

    .venv/bin/python benchmarks/demo_realtime.py [--seconds 10] [--threads 2] [--runs 3] [--dit F --vae F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from rap_core.eval.run import HELDOUT_IDENTITIES, heldout_speech
from rap_core.pipeline import RAPPipeline
from rap_core.synthetic import SAMPLE_RATE, portrait, sample_identity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dit", help="DiT weights instead of the built-in ones")
    parser.add_argument("--vae", help="VAE weights instead of the built-in ones")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = RAPPipeline.from_preset(args.preset, dit=args.dit, vae=args.vae)
    image = portrait(sample_identity(HELDOUT_IDENTITIES), pipe.config.height)
    audio = heldout_speech(0, args.seconds)
    pipe.generate(image, audio[:SAMPLE_RATE], SAMPLE_RATE, seed=0)  # warm-up: 1 s
    runs = []
    for run in range(args.runs):
        start = time.perf_counter()
        frames = pipe.generate(image, audio, SAMPLE_RATE, seed=run)
        wall = time.perf_counter() - start
        runs.append(
            {"frames": int(frames.shape[0]), "wall_s": round(wall, 3), "realtime_factor": round(wall / args.seconds, 3)}
        )
    median = statistics.median(run["realtime_factor"] for run in runs)
    print(
        json.dumps(
            {
                "preset": args.preset,
                "threads": args.threads,
                "audio_s": args.seconds,
                "runs": runs,
                "median_realtime_factor": median,
                "real_time": median <= 1.0,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
