"""RAP Paste Back: the animated frames back into the photo they were framed from."""

from __future__ import annotations

import comfy.model_management as mm
import comfy.utils
from comfy_api.latest import io

from ..rap_core.framing import Framing
from .types import RAPFraming


class RAPPasteBack(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RAPPasteBack",
            display_name="RAP Paste Back",
            category="RAP",
            description="Puts the frames of RAP Decode back into the photo RAP Reference Encode framed them from, "
            "over the framed region with a feathered seam: the video gets the photo's size.",
            inputs=[
                io.Image.Input("images", tooltip="The animated frames (RAP Decode's images)."),
                RAPFraming.Input("framing", tooltip="RAP Reference Encode's framing output."),
            ],
            outputs=[io.Image.Output(display_name="images")],
        )

    @classmethod
    def execute(cls, images, framing: Framing) -> io.NodeOutput:
        bar = comfy.utils.ProgressBar(images.shape[0])

        def progress(done: int) -> None:
            mm.throw_exception_if_processing_interrupted()
            bar.update_absolute(done)

        return io.NodeOutput(framing.paste(images, progress=progress))
