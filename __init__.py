"""ComfyUI-RAP: real-time audio-driven talking portraits for ComfyUI (V3 node schema).

ComfyUI imports this file as the pack; `rap_core/` is the ComfyUI-free engine it wraps.
"""

import sys

from comfy_api.latest import ComfyExtension, io

from .nodes import NODES
from .nodes.files import register_model_folder
from .nodes.live_server import register as register_live_routes

WEB_DIRECTORY = "./web"  # the RAP Live sidebar tab: ComfyUI loads every .js under it as a frontend extension


class RAPExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> RAPExtension:
    register_model_folder()
    # ComfyUI's server module is loaded when the pack runs in a server, not when scripts or tests import it
    server = getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)
    if server is not None:
        register_live_routes(server.routes)
    return RAPExtension()
