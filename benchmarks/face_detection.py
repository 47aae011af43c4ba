"""Face detection on 1-megapixel photos on a CPU: `rap_core.face_detection.detect_faces` per photo.

Three 1152x864 photos made from scikit-image's bundled pictures, passed as `frame_portrait` passes them
(an [H, W, 3] photo viewed as [3, H, W]):
- small face: the astronaut scaled to 300 pixels, off-centre on a grey canvas (her face about 60 pixels),
  found only by the finest search windows;
- large face: the astronaut's head and shoulders filling the photo (face about 230 pixels), found by
  the first look at the whole photo;
- no face: the coffee cup, where every search level runs.

The reference, timed in the same process at each thread count, is one BlazeFace forward pass of a
single 128x128 input; each photo's time is also given as a multiple of it, which travels between
machines better than milliseconds. After one warm-up call, every figure is the median of `--runs`
calls. `--against FILE` times another version of rap_core/face_detection.py (for instance the
committed one: `git show HEAD:rap_core/face_detection.py > /tmp/old.py`) in the same process,
alternating with this one call by call, and gives the ratio this / that (below 1.0: this is faster).
The report ends with one JSON line of every median.

    .venv/bin/python benchmarks/face_detection.py [--threads 1 2] [--runs 15] [--against FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from skimage import data as skimage_data

from rap_core.face_detection import detect_faces
from rap_core.loading.builtin import blazeface

HEIGHT, WIDTH = 864, 1152
EXPECTED_FACES = {"small face": 1, "large face": 1, "no face": 0}


def _resized(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """image [h, w, 3] float 0..1 -> [height, width, 3], antialiased bilinear."""
    x = rearrange(image, "h w c -> 1 c h w")  # [1, 3, h, w]
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True).clamp(0, 1)
    return rearrange(x, "1 c h w -> h w c")  # [height, width, 3]


def photos() -> dict[str, torch.Tensor]:
    """The three photos, [3, 864, 1152] float 0..1 each: views of [864, 1152, 3] tensors."""
    astronaut = torch.from_numpy(skimage_data.astronaut()).float() / 255  # [512, 512, 3]
    coffee = torch.from_numpy(skimage_data.coffee()).float() / 255  # [400, 600, 3]
    small = torch.full((HEIGHT, WIDTH, 3), 0.5)
    small[400:700, 700:1000] = _resized(astronaut, 300, 300)
    large = _resized(astronaut[0:384, 32:544], HEIGHT, WIDTH)  # head and shoulders, 4:3
    found = {"small face": small, "large face": large, "no face": _resized(coffee, HEIGHT, WIDTH)}
    return {name: rearrange(photo, "h w c -> c h w") for name, photo in found.items()}


def baseline(path: str) -> Callable[[torch.Tensor], list]:
    """detect_faces of another version of rap_core/face_detection.py, imported as a rap_core module so
    that its relative imports resolve."""
    spec = importlib.util.spec_from_file_location("rap_core._benchmarked_face_detection", Path(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.detect_faces


def medians(calls: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median milliseconds of each call over `runs` rounds after one warm-up round; the calls alternate."""
    for call in calls.values():
        call()
    times = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--against", help="another face_detection.py to time alongside, call by call")
    args = parser.parse_args()
    network, single = blazeface(), torch.rand(1, 3, 128, 128) * 2 - 1  # one 128x128 input in [-1, 1]
    other = baseline(args.against) if args.against else None
    report = {"photo": f"{WIDTH}x{HEIGHT}", "runs": args.runs, "threads": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        forward = medians({"forward": lambda: network(single)}, args.runs)["forward"]
        print(f"threads {threads}: one BlazeFace forward (1x3x128x128) {forward:.2f} ms")
        figures = {"forward_ms": round(forward, 2)}
        for name, photo in photos().items():
            faces = detect_faces(photo)
            calls = {"this": lambda photo=photo: detect_faces(photo)}
            if other:
                calls["that"] = lambda photo=photo: other(photo)
            ms = medians(calls, args.runs)
            note = "" if len(faces) == EXPECTED_FACES[name] else f"  (expected {EXPECTED_FACES[name]} faces)"
            boxes = [[round(v) for v in face.box.tolist()] for face in faces]
            line = f"  {name:10s} {ms['this']:7.1f} ms = {ms['this'] / forward:5.1f} forwards, faces {boxes}{note}"
            figures[name.replace(" ", "_") + "_ms"] = round(ms["this"], 1)
            if other:
                line += f"; against {ms['that']:7.1f} ms: ratio {ms['this'] / ms['that']:.3f}"
                figures[name.replace(" ", "_") + "_against_ms"] = round(ms["that"], 1)
            print(line)
        report["threads"][threads] = figures
    print(json.dumps(report))


if __name__ == "__main__":
    main()
