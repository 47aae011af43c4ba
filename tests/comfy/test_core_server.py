"""The harness's own check: core nodes only, through HTTP/WS, comfy-cli and the real frontend."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import av
import pytest
from harness import (
    ComfyError,
    ComfyServer,
    Frontend,
    animated_outputs,
    api_to_ui,
    comfy_cli_run,
    load_ui_workflow,
    ndjson,
    prompt_diff,
)


def core_prompt(prefix: str = "video/core") -> dict[str, Any]:
    """EmptyImage 64x64 x8 -> CreateVideo 8 fps -> SaveVideo, every widget given."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 8, "color": 0}},
        "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8.0}},
        "3": {
            "class_type": "SaveVideo",
            "inputs": {
                "video": ["2", 0],
                "filename_prefix": prefix,
                "format": "auto",
                "format.codec": "auto",
                "codec": "auto",
            },  # format.codec: 0.33's nested codec choice; 0.3.75 ignores it
        },
    }


def video_stats(data: bytes) -> tuple[int, int, int]:
    """(frames, width, height) of an encoded video, decoded with PyAV."""
    with av.open(io.BytesIO(data)) as container:
        frames = [f for f in container.decode(video=0)]
    return len(frames), frames[0].width, frames[0].height


def test_core_prompt_over_http_and_ws(comfy_server: ComfyServer) -> None:
    with comfy_server.client() as client:
        run = client.run(core_prompt(), timeout=120)
        run.raise_for_status()
        assert run.status == "success"
        assert {"1", "2", "3"} <= set(run.executed_nodes)
        entry = client.history(run.prompt_id)
    assert entry["status"]["status_str"] == "success"
    (video,) = animated_outputs(entry)
    assert video["filename"].endswith(".mp4") and video["type"] == "output"
    assert video_stats(client.download(video)) == (8, 64, 64)


def test_core_prompt_through_comfy_cli(comfy_server: ComfyServer, tmp_path: Path) -> None:
    workflow = tmp_path / "core_api.json"
    workflow.write_text(json.dumps(core_prompt("video/core_cli")))
    proc = comfy_cli_run(workflow, comfy_server.port, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    envelope = [e for e in ndjson(proc.stdout) if e.get("type") == "envelope"]
    assert envelope and envelope[-1].get("ok") is True, proc.stdout[-3000:]
    saved = list((comfy_server.output_dir / "video").glob("core_cli_*.mp4"))
    assert len(saved) == 1
    assert video_stats(saved[0].read_bytes()) == (8, 64, 64)


def test_unknown_class_is_rejected_with_400(comfy_server: ComfyServer) -> None:
    with comfy_server.client() as client, pytest.raises(ComfyError) as info:
        client.queue({"1": {"class_type": "NoSuchNodeAnywhere", "inputs": {}}})
    assert info.value.status == 400
    error = info.value.body["error"]
    assert error["type"] in ("invalid_prompt", "missing_node_type")  # 0.3.75, 0.33
    assert "NoSuchNodeAnywhere" in error["message"] + error.get("details", "")


def test_frontend_registers_and_round_trips_core_prompt(comfy_server: ComfyServer) -> None:
    prompt = core_prompt()
    with Frontend(comfy_server.url) as ui:
        assert "CreateVideo" in ui.registered_node_types()
        workflow = api_to_ui(ui.page, prompt)
        assert sorted(n["type"] for n in workflow["nodes"]) == ["CreateVideo", "EmptyImage", "SaveVideo"]
        result = load_ui_workflow(ui.page, workflow)
        assert result["missing_types"] == []
        assert prompt_diff(prompt, result["prompt_output"], ui.object_info) == []
        assert ui.page_errors == []
