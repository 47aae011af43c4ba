"""`make demo`: run workflows/api/rap_demo.json in a real ComfyUI and write output/rap_demo.mp4.

Starts a server with this repo mounted as the pack, queues the API workflow, waits for it over
the websocket, downloads the SaveVideo output and reports its frames and audio duration.
Exits non-zero on any failure. RAP_DEMO_TIMEOUT (seconds, default 3600) bounds the run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import av
from harness import REPO_ROOT, ComfyServer, animated_outputs

WORKFLOW = REPO_ROOT / "workflows" / "api" / "rap_demo.json"
OUTPUT = REPO_ROOT / "output" / "rap_demo.mp4"


def describe(path: Path) -> tuple[int, float, float]:
    """(video frames, video seconds, audio seconds) of an mp4, decoded with PyAV."""
    with av.open(str(path)) as container:
        vstream = container.streams.video[0]
        fps = float(vstream.average_rate or 0)
        frames = sum(1 for _ in container.decode(video=0))
    audio_seconds = 0.0
    with av.open(str(path)) as container:
        if container.streams.audio:
            rate = container.streams.audio[0].rate
            samples = sum(frame.samples for frame in container.decode(audio=0))
            audio_seconds = samples / rate
    return frames, (frames / fps if fps else 0.0), audio_seconds


def main() -> int:
    timeout = float(os.environ.get("RAP_DEMO_TIMEOUT", "3600"))
    prompt = json.loads(WORKFLOW.read_text())
    started = time.monotonic()
    with ComfyServer() as server:
        problems = server.log_problems()
        if problems:
            print("ComfyUI could not load the pack:\n" + "\n".join(problems), file=sys.stderr)
            print(server.log_tail(80), file=sys.stderr)
            return 1
        print(f"ComfyUI up at {server.url}; queueing {WORKFLOW.relative_to(REPO_ROOT)}", flush=True)
        with server.client() as client:
            run = client.run(prompt, timeout=timeout)
            if run.status != "success":
                err = run.error or {}
                print(
                    f"demo failed ({run.status}) in node {err.get('node_id')} ({err.get('node_type')}): "
                    f"{err.get('exception_type')}: {err.get('exception_message')}",
                    file=sys.stderr,
                )
                print("".join(err.get("traceback") or []), file=sys.stderr)
                return 1
            videos = animated_outputs(client.history(run.prompt_id))
            if len(videos) != 1:
                print(f"expected one SaveVideo output, got {videos}", file=sys.stderr)
                return 1
            data = client.download(videos[0])
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_bytes(data)
    frames, video_s, audio_s = describe(OUTPUT)
    print(f"wrote {OUTPUT}: {frames} frames ({video_s:.2f} s video), audio {audio_s:.2f} s, "
          f"in {time.monotonic() - started:.0f} s")  # fmt: skip
    if frames == 0:
        print("the video has no frames", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
