"""Write the UI-format workflow that the real ComfyUI frontend makes from an API workflow.

    python tests/comfy/ui_from_api.py workflows/api/X.json workflows/X.json [IN2 OUT2 ...]

Starts a server with this repo mounted as the pack, opens the frontend in headless chromium,
loads each API file with the frontend's own loader (`app.loadApiJson`, which lays the graph
out), checks that the frontend converts the result back to the same prompt, and writes the
workflow it exports (pretty JSON, 2-space indent).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness import ComfyServer, Frontend, api_to_ui, load_ui_workflow, prompt_diff


def main(argv: list[str]) -> int:
    if len(argv) < 2 or len(argv) % 2:
        print(__doc__, file=sys.stderr)
        return 2
    pairs = [(Path(argv[i]), Path(argv[i + 1])) for i in range(0, len(argv), 2)]
    with ComfyServer() as server, Frontend(server.url) as ui:
        problems = server.log_problems()
        if problems:
            print("ComfyUI could not load the pack:\n" + "\n".join(problems), file=sys.stderr)
            return 1
        for src, dst in pairs:
            api = json.loads(src.read_text())
            workflow = api_to_ui(ui.page, api)
            back = load_ui_workflow(ui.page, workflow)
            diff = prompt_diff(api, back["prompt_output"], ui.object_info)
            if back["missing_types"] or diff:
                print(f"{src}: the frontend does not give the same prompt back "
                      f"(API file vs frontend; missing types {back['missing_types']}):", file=sys.stderr)
                print("\n".join(diff), file=sys.stderr)
                return 1
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(json.dumps(workflow, indent=2) + "\n")
            print(f"{src} -> {dst} ({len(workflow['nodes'])} nodes)")
        if ui.page_errors:
            print(f"page errors: {ui.page_errors}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
