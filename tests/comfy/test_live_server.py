"""RAP Live through a real ComfyUI server (nodes/live_server.py): a client streams speech at real-time
pace over /rap/live/ws and gets back exactly the utterance's frames, lip-synced, with its audio aligned;
refusals answer with an error or a 403 and leave the server up; a client that drops frees its session."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
import threading
import time
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import websocket
from PIL import Image

from rap_core.eval.lipsync import lipsync_score, loudness_envelope, mouth_opening
from rap_core.eval.run import HELDOUT_IDENTITIES, heldout_speech
from rap_core.live_protocol import read_audio, read_video
from rap_core.synthetic import layout, sample_identity
from rap_core.synthetic import portrait as synthetic_portrait

SR, FPS = 16000, 25
BLOCK = SR // 50  # 20 ms of audio a message, as a microphone sends it
IDENTITY = sample_identity(HELDOUT_IDENTITIES + 7)


@pytest.fixture(scope="module")
def server(comfy_server):
    """The session's server, with a held-out synthetic portrait (model size) in its input folder."""
    still = synthetic_portrait(IDENTITY, 128)  # [H, W, 3] in 0..1
    pixels = (still * 255).round().byte().numpy()
    Image.fromarray(pixels).save(comfy_server.input_dir / "live_portrait.png")
    return comfy_server


def connect(server, **options) -> websocket.WebSocket:
    return websocket.create_connection(server.url.replace("http", "ws") + "/rap/live/ws", timeout=60, **options)


def start(ws: websocket.WebSocket, **fields) -> dict:
    """Send `start` for the demo model on the portrait -> the `ready` message."""
    message = {
        "type": "start",
        "portrait": "live_portrait.png",
        "preset": "demo",
        "sample_rate": SR,
        "seed": 7,
        "framing": "centre",
    } | fields
    ws.send(json.dumps(message))
    return next_text(ws)


def next_text(ws: websocket.WebSocket) -> dict:
    """The next text message, skipping video and audio."""
    while True:
        opcode, data = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return json.loads(data)


def pcm16(samples: torch.Tensor) -> bytes:
    return (samples.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().astype("<i2").tobytes()


def test_a_streamed_utterance_comes_back_whole_lip_synced_and_with_its_audio(server):
    speech = heldout_speech(7, 4.0)
    ws = connect(server)
    try:
        ready = start(ws)
        assert (ready["type"], ready["fps"], ready["width"], ready["height"]) == ("ready", FPS, 128, 128)

        def speak() -> None:  # real-time pace, then `end`
            began = time.monotonic()
            for at in range(0, speech.numel(), BLOCK):
                time.sleep(max(0.0, began + at / SR - time.monotonic()))
                ws.send_binary(pcm16(speech[at : at + BLOCK]))
            ws.send(json.dumps({"type": "end"}))

        speaker = threading.Thread(target=speak)
        speaker.start()
        frames, audio, done = {}, {}, None
        while done is None:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_TEXT:
                message = json.loads(data)
                assert message["type"] == "segment_done", message
                done = message
            elif data[:4] == b"RAPV":
                index, jpeg = read_video(data)
                frames[index] = jpeg
            else:
                first, rate, samples = read_audio(data)
                assert rate == SR
                audio[first] = samples
        speaker.join()
    finally:
        ws.close()
    assert done["frames"] == math.ceil(4.0 * FPS) == 100  # exactly the utterance's frames
    first = done["first"]
    assert all(index in frames for index in range(first, first + 100))
    assert sorted(frames) == list(range(min(frames), max(frames) + 1))  # no frame lost on loopback
    video = (
        torch.stack(
            [torch.from_numpy(np.array(Image.open(io.BytesIO(frames[i])))) for i in range(first, first + 100)]
        ).float()
        / 255
    )  # [100, H, W, 3]
    sync = lipsync_score(mouth_opening(video, layout(IDENTITY, 128).mouth_box), loudness_envelope(speech, SR, FPS))
    assert sync.r >= 0.6 and abs(sync.lag) <= 1
    heard = torch.from_numpy(np.concatenate([audio[k] for k in sorted(audio)]).astype("float32"))
    start_sample = min(audio)
    assert start_sample == min(frames) * SR // FPS  # the audio timeline is the frames'
    said = heard[first * SR // FPS - start_sample :][: speech.numel()] / 32767
    assert (said - speech).abs().max() < 1.5 / 32767  # the speech, aligned to its frames, as PCM16


def test_refusals_answer_and_leave_the_server_up(server):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(server, origin="http://elsewhere.example")
    assert refused.value.status_code == 403
    ws = connect(server)
    try:
        ws.send_binary(b"\x01\x02\x03")  # audio before start
        assert "before any audio" in next_text(ws)["message"]
        assert "without a folder" in start(ws, portrait="../secrets.png")["message"]
        assert "without a folder" in start(ws, portrait="/etc/passwd")["message"]
        second = connect(server)  # over the cap of one session
        try:
            assert "already run" in next_text(second)["message"]
        finally:
            second.close()
        assert start(ws)["type"] == "ready"  # the connection stayed usable
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            ws.send_binary(bytes(100 << 20))  # 100 MB: over the message cap, the server closes (1009) this socket
            while True:
                ws.recv_data()
    finally:
        ws.close()
    with urllib.request.urlopen(server.url + "/system_stats", timeout=10) as response:
        assert response.status == 200


def test_a_client_that_drops_mid_utterance_frees_its_session_within_a_second(server):
    ws = connect(server)
    assert start(ws)["type"] == "ready"
    ws.send_binary(pcm16(heldout_speech(3, 1.0)))
    ws.sock.close()  # gone without a close frame
    time.sleep(1.0)
    again = connect(server)
    try:
        assert start(again)["type"] == "ready"
    finally:
        again.close()


def test_the_documented_client_runs(server, tmp_path):
    """docs/LIVE.md's 30-line client, as printed there, streams a wav and saves the utterance's frames."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "LIVE.md").read_text()
    client = re.search(r"## A client in 30 lines.*?```python\n(.*?)```", doc, re.S).group(1)
    assert len(client.strip().splitlines()) <= 30
    (tmp_path / "client.py").write_text(client)
    with wave.open(str(tmp_path / "speech.wav"), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(SR)
        wav.writeframes(pcm16(heldout_speech(5, 2.0)))
    url = server.url.replace("http", "ws") + "/rap/live/ws"
    run = subprocess.run(
        [sys.executable, "client.py", url, "live_portrait.png", "speech.wav", "frames"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    ready, done = (json.loads(line) for line in run.stdout.splitlines())
    assert ready["type"] == "ready" and done["type"] == "segment_done" and done["frames"] == 50
    saved = sorted(int(path.stem) for path in (tmp_path / "frames").glob("*.jpg"))
    assert set(range(done["first"], done["first"] + 50)) <= set(saved)
    assert Image.open(tmp_path / "frames" / f"{saved[-1]:06d}.jpg").size == (128, 128)
