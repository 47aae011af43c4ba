"""RAP Live in the real frontend (web/rap_live.js): Chromium's fake microphone plays speech into the RAP Live tab,
which streams it to the server (nodes/live_server.py) and shows the talking portrait with its sound, in sync; the
output page (nodes/live_view.html) shows the same session; an audio file is streamed as one utterance."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from harness import REPO_ROOT, ComfyServer, Frontend

SPEECH = REPO_ROOT / "assets" / "rap_speech.wav"  # 4 s of speech, 16 kHz; the fake microphone loops it
FAKE_MICROPHONE = (
    "--use-fake-ui-for-media-stream",  # grants the microphone without asking
    "--use-fake-device-for-media-stream",
    f"--use-file-for-fake-audio-capture={SPEECH}",
)
SYNC_MS = 40  # a frame is 40 ms: drawn within one frame of its sound
TEMPLATES = "[role=dialog][aria-labelledby='global-workflow-template-selector']"


@contextmanager
def live_tab(server: ComfyServer, extra_args: tuple[str, ...] = ()) -> Iterator[Any]:
    """The frontend's page with the RAP Live tab open on the demo preset and the assets' portrait; at the end, no
    uncaught error in the page."""
    # The frontend greets a server's new user with its template browser, once (loading the page marks the user
    # greeted): close it as they would.
    greeted = requests.get(f"{server.url}/settings/Comfy.TutorialCompleted", timeout=30).json() is not True
    with Frontend(server.url, extra_args=extra_args) as ui:
        page = ui.page
        if greeted:
            page.click(f"{TEMPLATES} button:has(i.pi-times)")
            page.wait_for_selector(TEMPLATES, state="detached")
        page.click(".rap-live-tab-button")
        page.wait_for_selector(".rap-live-portrait option[value='rap_portrait.png']", state="attached")
        page.select_option(".rap-live-portrait", "rap_portrait.png")
        page.select_option(".rap-live-preset", "demo")
        yield page
    assert not ui.page_errors, ui.page_errors


def pixels(page: Any, selector: str) -> str:
    """A canvas's pixels, as a PNG data URL."""
    return page.evaluate("selector => document.querySelector(selector).toDataURL()", selector)


def stop(page: Any) -> None:
    """Stop, and wait until the server has closed the session (Start is offered again)."""
    page.click(".rap-live-stop")
    page.wait_for_function("() => !document.querySelector('.rap-live-start').disabled")


def test_the_microphone_talks_back_in_sync_and_the_output_page_shows_it(comfy_server: ComfyServer) -> None:
    with live_tab(comfy_server, FAKE_MICROPHONE) as page:
        page.select_option(".rap-live-source", "microphone")
        page.click(".rap-live-start")
        page.wait_for_function("() => window.__rapLive?.framesShown >= 50", timeout=120_000)  # 2 s of the talk

        counts, shots = [], []
        for _ in range(5):
            counts.append(page.evaluate("() => window.__rapLive.framesShown"))
            shots.append(pixels(page, ".rap-live-canvas"))
            time.sleep(0.5)
        assert all(a != b for a, b in zip(shots, shots[1:])), "the portrait stood still for 0.5 s"
        assert all(a < b for a, b in zip(counts, counts[1:])), f"frames shown stalled: {counts}"

        live = page.evaluate("() => ({...window.__rapLive, fpsShown: window.__rapLive.fpsShown})")
        offsets = live["avOffsetsMs"]
        assert len(offsets) >= 50, live
        median = statistics.median(abs(offset) for offset in offsets)
        print(
            f"median |a/v offset| {median:.1f} ms over {len(offsets)} frames; latency {live['latencyMs']:.0f} ms; "
            f"{live['fpsShown']} fps; {live['dropped']} dropped, {live['framesShown']} shown"
        )
        assert median <= SYNC_MS
        assert 0 < live["latencyMs"] < 5000  # the speech sent came back, mapped to its frames

        with page.expect_popup() as popup:
            page.click(".rap-live-open")
        view = popup.value
        view.wait_for_function("() => document.querySelector('#status').hidden")  # hidden once it plays
        time.sleep(1.0)  # past the first frames
        first = pixels(view, "canvas")
        time.sleep(0.5)
        assert pixels(view, "canvas") != first, "the output page does not show the talk"
        view.close()

        stop(page)
        assert page.text_content(".rap-live-status") == "Stopped"


def test_an_audio_file_is_streamed_as_one_utterance(comfy_server: ComfyServer) -> None:
    with live_tab(comfy_server) as page:
        page.select_option(".rap-live-source", "file")
        page.set_input_files(".rap-live-audio-file", SPEECH)
        page.click(".rap-live-start")
        # 3.96 s of speech: 100 frames at 25 fps, sent at real-time pace, then `end`
        page.wait_for_selector(".rap-live-status:text-is('Live: 100 frames of speech done')", timeout=120_000)
        assert page.evaluate("() => window.__rapLive.latencyMs") > 0
        stop(page)
