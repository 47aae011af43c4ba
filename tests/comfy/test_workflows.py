"""The pack's workflows in a real ComfyUI (0.3.75 and 0.33.0): queued over HTTP and with comfy-cli,
rejected when invalid, cancelled mid-sampling, and loaded in the real frontend."""

from __future__ import annotations

import io
import json
import math

import av
import numpy as np
import pytest
import torch
from harness import (
    REPO_ROOT,
    ComfyError,
    ComfyServer,
    Frontend,
    animated_outputs,
    comfy_cli_run,
    layout_problems,
    load_ui_workflow,
    node_boxes,
    prompt_diff,
)
from PIL import Image

from rap_core.config import get_preset
from rap_core.framing import frame_portrait
from rap_core.media.container import read_image

WORKFLOWS = REPO_ROOT / "workflows"
OFFLINE = ["rap_demo", "rap_long_talk"]  # run on a CPU with the built-in weights
ALL = [*OFFLINE, "rap_flashhead_lite", "rap_fantasytalking"]
SPEECH = REPO_ROOT / "assets" / "rap_speech.wav"
DEMO_STEPS = get_preset("demo").sampling.steps  # the shipped demo samplers leave steps at 0: the preset's


def api(name: str) -> dict:
    return json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())


def media_stats(data: bytes) -> dict:
    """Frames, fps and the audio track's duration of an mp4, decoded with PyAV."""
    with av.open(io.BytesIO(data)) as container:
        audio = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(audio))
        container.seek(0)
        frames = sum(1 for _ in container.decode(video=0))
        return dict(
            frames=frames, fps=float(container.streams.video[0].average_rate), audio_seconds=samples / audio.rate
        )


def speech_seconds() -> float:
    with av.open(str(SPEECH)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.rate


def check_video(stats: dict) -> None:
    """ceil(audio seconds * 25) frames at 25 fps, and an audio track as long as the speech
    (the AAC encoder may add up to one 1024-sample frame of padding)."""
    seconds = speech_seconds()
    assert stats["frames"] == math.ceil(seconds * 25) == 100
    assert stats["fps"] == 25.0
    assert seconds - 0.01 <= stats["audio_seconds"] <= stats["frames"] / 25 + 1024 / 16000


def frames_of(data: bytes):
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_ndarray(format="rgb24").astype(int) for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def outputs(comfy_server: ComfyServer) -> dict:
    """Each offline workflow queued over HTTP and awaited on the websocket: its run and its mp4."""
    results = {}
    with comfy_server.client() as client:
        for name in OFFLINE:
            prompt = api(name)
            run = client.run(prompt, timeout=600)
            run.raise_for_status()
            history = client.history(run.prompt_id)
            (video,) = animated_outputs(history)
            (crop,) = [
                image
                for node, out in history["outputs"].items()
                if prompt[node]["class_type"] == "PreviewImage"
                for image in out["images"]
            ]
            results[name] = dict(run=run, mp4=client.download(video), crop=client.download(crop))
    return results


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_workflow_over_http_makes_the_talk_video(outputs, name):
    check_video(media_stats(outputs[name]["mp4"]))


@pytest.mark.parametrize("name", OFFLINE)
def test_the_crop_preview_shows_what_the_model_sees(outputs, name):
    demo = get_preset("demo")
    expected = frame_portrait(
        read_image(REPO_ROOT / "assets" / "rap_portrait.png"), demo.height, demo.width, demo.framing, demo.face_ratio
    ).crop()  # [128, 128, 3]
    shown = torch.from_numpy(np.array(Image.open(io.BytesIO(outputs[name]["crop"])).convert("RGB"))) / 255
    assert shown.shape == expected.shape
    assert (shown - expected).abs().max() <= 1 / 255 + 1e-6  # up to the PNG's 8 bits


def test_sampler_reports_its_denoising_steps_up_to_the_last(outputs):
    """Monotonic, within 0..N and ending at N/N, N every denoising step of every chunk (ComfyUI 0.33
    drops updates that come under 0.1 s after the last one, so not every step is seen)."""
    sampler = [(value, top) for value, top, node in outputs["rap_demo"]["run"].progress if node == "8"]
    chunks = 7  # 17-frame chunks sharing one frame: 17 + 6 * 16 >= 100 > 17 + 5 * 16
    total = chunks * DEMO_STEPS
    assert len(sampler) > 1 and {top for _, top in sampler} == {total}
    values = [value for value, _ in sampler]
    assert values == sorted(values) and 0 <= values[0] and values[-1] == total


def test_long_talk_split_over_two_samplers_equals_the_single_sampler(outputs):
    whole, split = frames_of(outputs["rap_demo"]["mp4"]), frames_of(outputs["rap_long_talk"]["mp4"])
    assert len(whole) == len(split) == 100
    worst = max(abs(a - b).max() for a, b in zip(whole, split))
    assert worst <= 2  # the same frames, through two H.264 encodes


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_workflow_through_comfy_cli(comfy_server: ComfyServer, name):
    before = set(comfy_server.output_dir.rglob("*.mp4"))
    proc = comfy_cli_run(WORKFLOWS / "api" / f"{name}.json", comfy_server.port, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (new,) = set(comfy_server.output_dir.rglob("*.mp4")) - before
    check_video(media_stats(new.read_bytes()))


def rejection(comfy_server: ComfyServer, prompt: dict) -> dict:
    """The 400 answer to queueing `prompt`. Its previews are left out first: ComfyUI runs the outputs that
    validate, and the crop's preview does not depend on the sampler."""
    prompt = {node: value for node, value in prompt.items() if value["class_type"] != "PreviewImage"}
    with comfy_server.client() as client, pytest.raises(ComfyError) as info:
        client.queue(prompt)
    assert info.value.status == 400
    return info.value.body


def test_missing_checkpoint_is_rejected_naming_file_folder_and_repo(comfy_server: ComfyServer):
    body = rejection(comfy_server, api("rap_flashhead_lite"))
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    messages = json.dumps(body["node_errors"])
    for expected in (
        "Model_Lite",
        "VAE_LTX",
        "diffusion_pytorch_model.safetensors",
        "models/rap/SoulX-FlashHead-1_3B",
        "Soul-AILab/SoulX-FlashHead-1_3B",
        "'config.json'",
        "facebook/wav2vec2-base-960h",
    ):
        assert expected in messages


def test_an_api_workflow_setting_every_sampler_widget_gives_the_same_video(comfy_server: ComfyServer, outputs):
    """rap_demo as API workflows were written before the sampler followed the preset: the demo preset's
    values set explicitly, and alpha_w/alpha_delta given with audio_attention "model"."""
    explicit = api("rap_demo")
    explicit["8"]["inputs"].update(
        steps=4,
        cfg=1.0,
        shift=3.0,
        sampler="euler",
        continuity="inherit",
        continuity_n=1,
        chunk_latents=9,
        alpha_w=1.0,
        alpha_delta=0.0,
        color_correction=0.0,
    )
    with comfy_server.client() as client:
        run = client.run(explicit, timeout=600)
        run.raise_for_status()
        (video,) = animated_outputs(client.history(run.prompt_id))
        same, shipped = frames_of(client.download(video)), frames_of(outputs["rap_demo"]["mp4"])
    assert len(same) == len(shipped) == 100 and max(abs(a - b).max() for a, b in zip(same, shipped)) == 0


def test_wrong_socket_type_and_out_of_range_settings_are_rejected(comfy_server: ComfyServer):
    wrong = api("rap_demo")
    wrong["8"]["inputs"]["reference"] = ["1", 0]  # an IMAGE where RAP_REFERENCE belongs
    errors = rejection(comfy_server, wrong)["node_errors"]["8"]["errors"]
    assert any(e["type"] == "return_type_mismatch" and "reference" in e["details"] for e in errors)

    negative = api("rap_demo")
    negative["8"]["inputs"]["steps"] = -1  # 0 is the preset's
    errors = rejection(comfy_server, negative)["node_errors"]["8"]["errors"]
    assert [(e["type"], e["details"]) for e in errors] == [("value_smaller_than_min", "steps")]

    weak = api("rap_demo")
    weak["8"]["inputs"]["cfg"] = 0.5  # within the widget's range, whose 0 is the preset's
    with comfy_server.expect_errors(), comfy_server.client() as client:
        run = client.run(weak, timeout=600)
    assert run.status == "error" and run.error["node_id"] == "8"
    assert run.error["exception_type"].endswith("RAPInputError")
    assert (
        "cfg 0.5 is below 1: set 1 (no guidance) or more, or 0 for the model's preset (1)"
        in run.error["exception_message"]
    )


def test_execution_error_names_the_problem(comfy_server: ComfyServer):
    prompt = api("rap_long_talk")
    prompt["12"]["inputs"]["steps"] = DEMO_STEPS + 1  # a continued talk must keep the first sampler's steps
    with comfy_server.expect_errors(), comfy_server.client() as client:
        run = client.run(prompt, timeout=600)
    assert run.status == "error" and run.error["node_id"] == "12"
    message = run.error["exception_message"]
    assert "changed: steps" in message and f"steps={DEMO_STEPS}" in message


def test_interrupt_stops_sampling_within_one_step_and_the_next_prompt_runs(comfy_server: ComfyServer):
    slow = api("rap_demo")
    slow["8"]["inputs"].update(steps=100, chunk_latents=16, cfg=3.0, seed=7)  # long chunks, guided: slower steps
    again = api("rap_demo")
    again["8"]["inputs"]["seed"] = 8  # not in ComfyUI's cache: the whole graph runs again
    before = set(comfy_server.output_dir.rglob("*.mp4"))
    with comfy_server.client() as client:
        prompt_id = client.queue(slow)
        seen = client.wait_progress(prompt_id, "8", at_least=3)  # sampling is under way
        client.interrupt()
        run = client.wait(prompt_id, timeout=120)
        assert run.status == "interrupted"
        sampled = max(value for value, _, node in run.progress if node == "8")
        assert sampled <= seen + 2  # the step under way when the interrupt came, at most one more
        assert animated_outputs(client.history(prompt_id)) == []
        assert set(comfy_server.output_dir.rglob("*.mp4")) == before  # nothing half-written
        after = client.run(again, timeout=600)
        after.raise_for_status()
        (video,) = animated_outputs(client.history(after.prompt_id))
        check_video(media_stats(client.download(video)))  # the next prompt's video is whole


def test_frontend_loads_each_ui_workflow_and_gives_the_api_workflow(comfy_server: ComfyServer):
    with Frontend(comfy_server.url) as ui:
        for name in ALL:
            loaded = load_ui_workflow(ui.page, json.loads((WORKFLOWS / f"{name}.json").read_text()))
            assert loaded["missing_types"] == [], name
            assert prompt_diff(api(name), loaded["prompt_output"], ui.object_info) == [], name
            titles = {key: node["_meta"]["title"] for key, node in loaded["prompt_output"].items()}
            assert titles == {key: node["_meta"]["title"] for key, node in api(name).items()}
        assert ui.page_errors == []


def test_ui_workflows_show_every_node_whole(comfy_server: ComfyServer):
    """Loaded in the frontend, with Load Image's preview in: no node covers another, no title is cut off."""
    with Frontend(comfy_server.url) as ui:
        problems = {}
        for name in ALL:
            load_ui_workflow(ui.page, json.loads((WORKFLOWS / f"{name}.json").read_text()))
            problems[name] = layout_problems(node_boxes(ui.page))
    assert problems == {name: [] for name in ALL}


def test_workflow_templates_list_the_pack_workflows(comfy_server: ComfyServer):
    import requests

    templates = requests.get(f"{comfy_server.url}/api/workflow_templates", timeout=30).json()
    assert sorted(templates["ComfyUI-RAP"]) == sorted(ALL)  # workflows/api/ stays out of the browser
