"""ComfyUI-RAP: real-time audio-driven talking portraits for ComfyUI (V3 node schema).

ComfyUI imports this file as the pack; `rap_core/` is the ComfyUI-free engine it wraps.
"""

from comfy_api.latest import ComfyExtension, io

from .nodes import NODES
from .nodes.files import register_model_folder


class RAPExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> RAPExtension:
    register_model_folder()
    return RAPExtension()
