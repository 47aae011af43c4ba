"""Very long audio: minutes of held-out speech streamed through `RAPPipeline.stream` to an mp4.

One process, the `demo` preset by default: an unseen synthetic face says `--minutes` of held-out
speech (voices and texts never trained on), chunk by chunk into `write_mp4` on disk. The peak RSS
is read once the first `--mark` minutes are written and again at the end. Then the mp4 is read
back with PyAV: its frame count against ceil(seconds * 25), its audio track's duration against the
video's, and the lip sync (rap_core.eval.lipsync) of its first and of its last minute.

    .venv/bin/python benchmarks/long_audio.py [--preset demo] [--minutes 20] [--mark 2] [--out long.mp4]

Ends with one line (shown here in two):

    long frames=<n> expected=<n> video_s=<s> audio_s=<s> rss_mark=<MiB> rss_end=<MiB> rss_ratio=<end/mark>
         r_first=<r> r_last=<r>
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections import deque

import av
import numpy as np
import torch

from rap_core.eval.lipsync import lipsync_score, loudness_envelope, mouth_opening
from rap_core.eval.run import HELDOUT_IDENTITIES, heldout_speech
from rap_core.media.container import write_mp4
from rap_core.pipeline import RAPPipeline
from rap_core.synthetic import SAMPLE_RATE, layout, portrait, sample_identity
from rap_core.timing import video_frame_count


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_back(path: str, minute_frames: int) -> tuple[int, float, np.ndarray, np.ndarray]:
    """(video frames, audio seconds, first minute [n, H, W, 3] uint8, last minute [n, H, W, 3] uint8)."""
    with av.open(path) as container:
        stream = container.streams.audio[0]
        audio_seconds = sum(frame.samples for frame in container.decode(stream)) / stream.rate
    first, last, count = [], deque(maxlen=minute_frames), 0
    with av.open(path) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="rgb24")  # [H, W, 3]
            if count < minute_frames:
                first.append(image)
            last.append(image)
            count += 1
    return count, audio_seconds, np.stack(first), np.stack(last)


def minute_sync(frames: np.ndarray, start: int, audio: torch.Tensor, box, fps: int) -> float:
    """Lip-sync r of `frames` (video frames start .. start + n) against their part of `audio`."""
    pixels = torch.from_numpy(frames).float() / 255  # [n, H, W, 3]
    lo, hi = start * SAMPLE_RATE // fps, (start + len(frames)) * SAMPLE_RATE // fps
    envelope = loudness_envelope(audio[lo:hi], SAMPLE_RATE, fps)[: len(frames)]
    return lipsync_score(mouth_opening(pixels, box), envelope).r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--mark", type=float, default=2.0, help="minutes after which the first RSS reading is taken")
    parser.add_argument("--identity", type=int, default=HELDOUT_IDENTITIES + 106, help="synthetic identity seed")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", help="mp4 to keep (default: a temporary file)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = RAPPipeline.from_preset(args.preset)
    fps, size = pipe.config.fps, pipe.config.height
    identity = sample_identity(args.identity)
    still, box = portrait(identity, size), layout(identity, size).mouth_box
    audio = heldout_speech(args.identity, args.minutes * 60)  # [S] at 16 kHz
    expected = video_frame_count(audio.numel(), SAMPLE_RATE, fps)
    mark_frames, readings = round(args.mark * 60 * fps), {}

    def metered(chunks):
        written = 0
        for chunk in chunks:
            yield chunk
            written += chunk.shape[0]
            if "mark" not in readings and written >= mark_frames:
                readings["mark"] = peak_rss_mib()

    with tempfile.TemporaryDirectory() as folder:
        path = args.out or os.path.join(folder, "long.mp4")
        start = time.perf_counter()
        written = write_mp4(
            path, metered(pipe.stream(still, audio, SAMPLE_RATE)), fps, audio=audio, sample_rate=SAMPLE_RATE
        )
        seconds = time.perf_counter() - start
        readings["end"] = peak_rss_mib()
        minute = 60 * fps
        frames, audio_seconds, first, last = read_back(path, minute)
    r_first = minute_sync(first, 0, audio, box, fps)
    r_last = minute_sync(last, frames - len(last), audio, box, fps)
    print(
        f"{args.minutes:g} min of speech -> {written} frames in {seconds:.1f} s "
        f"(real-time factor {seconds / (audio.numel() / SAMPLE_RATE):.3f}); peak RSS {readings['mark']:.0f} MiB "
        f"after {args.mark:g} min, {readings['end']:.0f} MiB at the end"
    )
    print(
        f"long frames={frames} expected={expected} video_s={frames / fps:.3f} audio_s={audio_seconds:.3f} "
        f"rss_mark={readings['mark']:.0f} rss_end={readings['end']:.0f} "
        f"rss_ratio={readings['end'] / readings['mark']:.3f} r_first={r_first:.3f} r_last={r_last:.3f}"
    )


if __name__ == "__main__":
    main()
