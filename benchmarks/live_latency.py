"""RAP Live's latency and pace through a real ComfyUI server (the test harness's, on this machine), with
the demo preset: a client streams held-out speech at real-time pace over /rap/live/ws, as docs/LIVE.md's
client does.

- End latency: from the utterance's last audio sample sent to its last frame received (the median of
  `--takes` utterances, one session each). The floor is one
  live chunk of audio (its new frames must all be heard) plus one chunk's compute, which this script
  times in-process on the same machine (a LiveTalk chunk, after a warm-up): the ratio latency / floor.
- Onset latency: from the first voiced sample sent to the first frame received whose mouth opens (median).
- Pace over `--long` seconds of speech: each frame's arrival minus its presentation time (the backlog),
  averaged over the first and the last 10 s, and the server's RSS at 10 s and at the end.

    .venv/bin/python benchmarks/live_latency.py [--seconds 4] [--takes 5] [--long 60]

Ends with one line (shown in two):
    live end_s=<s> floor_s=<s> end_ratio=<end/floor> onset_s=<s> backlog_first_s=<s> backlog_last_s=<s>
         rss_first_mb=<MiB> rss_last_mb=<MiB> rss_ratio=<last/first>
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch
import websocket
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "comfy"))
from harness import ComfyServer  # noqa: E402  (the tests' real-server harness, on the path above)

from rap_core.eval.lipsync import mouth_opening  # noqa: E402
from rap_core.eval.run import HELDOUT_IDENTITIES, heldout_speech  # noqa: E402
from rap_core.live import LiveTalk  # noqa: E402
from rap_core.live_protocol import read_video  # noqa: E402
from rap_core.pipeline import RAPPipeline  # noqa: E402
from rap_core.synthetic import layout, portrait, sample_identity  # noqa: E402

SR, FPS, BLOCK = 16000, 25, 320  # 20 ms messages
IDENTITY = sample_identity(HELDOUT_IDENTITIES + 7)


def chunk_compute() -> tuple[float, float]:
    """(seconds of audio a live chunk adds, median seconds to render one) with the demo model in-process."""
    pipe = RAPPipeline.from_preset("demo")
    talk = LiveTalk(pipe, portrait(IDENTITY, 128), SR, framing="centre")
    talk.push(heldout_speech(1, 6.0))
    times = []
    for _ in range(8):
        began = time.perf_counter()
        assert talk.poll()
        times.append(time.perf_counter() - began)
    return talk.step / FPS, statistics.median(times[2:])


def session(url: str, speech: torch.Tensor, on_frame) -> dict:
    """Stream `speech` at real-time pace, `end`, and receive until segment_done; `on_frame(index, jpeg,
    arrival)` sees every frame -> {"sent": wall time of each block sent, "done": the segment_done message}."""
    ws = websocket.create_connection(url, timeout=120)
    ws.send(
        json.dumps(
            {
                "type": "start",
                "portrait": "live.png",
                "preset": "demo",
                "sample_rate": SR,
                "seed": 7,
                "framing": "centre",
            }
        )
    )
    ready = json.loads(ws.recv())
    assert ready["type"] == "ready", ready
    sent = []

    def speak() -> None:
        began = time.monotonic()
        for at in range(0, speech.numel(), BLOCK):
            time.sleep(max(0.0, began + at / SR - time.monotonic()))
            ws.send_binary((speech[at : at + BLOCK] * 32767).round().to(torch.int16).numpy().tobytes())
            sent.append(time.monotonic())
        ws.send(json.dumps({"type": "end"}))

    speaker = threading.Thread(target=speak)
    speaker.start()
    while True:
        opcode, data = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_TEXT:
            done = json.loads(data)
            break
        if data[:4] == b"RAPV":
            on_frame(*read_video(data), time.monotonic())
    speaker.join()
    ws.close()
    return {"sent": sent, "done": done}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--long", type=float, default=60.0)
    parser.add_argument("--takes", type=int, default=5, help="utterances whose latencies give the medians")
    args = parser.parse_args()
    chunk_s, compute_s = chunk_compute()
    mouth = layout(IDENTITY, 128).mouth_box
    with ComfyServer() as server:
        still = (portrait(IDENTITY, 128) * 255).round().byte().numpy()
        Image.fromarray(still).save(server.input_dir / "live.png")
        url = server.url.replace("http", "ws") + "/rap/live/ws"
        ends, onsets = [], []
        for take in range(args.takes):
            speech = heldout_speech(7 + take, args.seconds)
            frames = {}
            short = session(
                url, speech, lambda index, jpeg, arrival, got=frames: got.__setitem__(index, (jpeg, arrival))
            )
            first, count = short["done"]["first"], short["done"]["frames"]
            ends.append(frames[first + count - 1][1] - short["sent"][-1])
            video = (
                torch.stack(
                    [
                        torch.from_numpy(np.array(Image.open(io.BytesIO(frames[i][0]))))
                        for i in range(first, first + count)
                    ]
                ).float()
                / 255
            )  # [N, H, W, 3]
            opening = mouth_opening(video, mouth)  # [N]
            moving = int((opening > 0.2 * opening.quantile(0.9)).nonzero()[0])
            voiced = int((speech.abs() > 0.02).nonzero()[0]) // BLOCK
            onsets.append(frames[first + moving][1] - short["sent"][voiced])
        end_s, onset_s = statistics.median(ends), statistics.median(onsets)

        process = psutil.Process(server.process.pid)
        pace, rss = [], []

        def on_long(index: int, jpeg: bytes, arrival: float) -> None:
            pace.append((index, arrival))
            if index % FPS == 0:
                rss.append(process.memory_info().rss / 2**20)

        session(url, heldout_speech(8, args.long), on_long)
    began = pace[0][1] - pace[0][0] / FPS
    backlog = [arrival - began - index / FPS for index, arrival in pace]  # seconds behind the clock
    window = 10 * FPS
    print(f"chunk {chunk_s:.2f} s of audio, compute {compute_s:.3f} s; {count} frames for {args.seconds:g} s")
    print("end latencies " + " ".join(f"{s:.3f}" for s in ends) + "; onsets " + " ".join(f"{s:.3f}" for s in onsets))
    print(
        f"live end_s={end_s:.3f} floor_s={chunk_s + compute_s:.3f} end_ratio={end_s / (chunk_s + compute_s):.2f} "
        f"onset_s={onset_s:.3f} backlog_first_s={statistics.mean(backlog[:window]):.3f} "
        f"backlog_last_s={statistics.mean(backlog[-window:]):.3f} rss_first_mb={rss[10]:.0f} "
        f"rss_last_mb={rss[-1]:.0f} rss_ratio={rss[-1] / rss[10]:.3f}"
    )


if __name__ == "__main__":
    main()
