"""Write the UI-format workflow that the real ComfyUI frontend makes from an API workflow, laid out.

    python tests/comfy/ui_from_api.py workflows/api/X.json workflows/X.json [IN2 OUT2 ...]

Starts a server with this repo mounted as the pack, opens the frontend in headless chromium,
loads each API file with the frontend's own loader (`app.loadApiJson`), measures each node as the
frontend draws it (Load Image with its preview) and lays the graph out in columns (`lay_out`). The
notes of an existing output file are kept, in a row above the graph. It checks that the frontend
converts the result back to the same prompt and shows every node whole (no overlap, no title cut
off), and writes the workflow (pretty JSON, 2-space indent).
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness import ComfyServer, Frontend, api_to_ui, layout_problems, load_ui_workflow, node_boxes, prompt_diff

NOTE_TYPES = ("Note", "MarkdownNote")
LEFT, TOP = 100, 130  # the first column's x; the first row's y (its title bar above)
GAP_X, GAP_Y = 100, 60  # between columns; between a node's bottom and the next node's title bar
TITLE_SLACK = 1.15  # titles are measured in this frontend's font; another version's may be wider


def lay_out(workflow: dict[str, Any], boxes: dict[str, Any], notes: list[dict[str, Any]]) -> dict[str, Any]:
    """`workflow` with its nodes in columns by depth (a node one column right of its deepest input),
    each column stacked in the order of its nodes' inputs' rows (then by id), every node at the size
    `boxes` (harness.node_boxes) measured and wide enough for its title, and `notes` in a row above.
    The view opens on the top left."""
    bar = boxes["title_height"]
    measured = {n["id"]: n for n in boxes["nodes"]}
    nodes = {str(n["id"]): n for n in workflow["nodes"]}
    inputs = defaultdict(list)
    for _, source, _, target, *_ in workflow["links"]:  # [link id, from node, from slot, to node, to slot, type]
        inputs[str(target)].append(str(source))
    depth: dict[str, int] = {}

    def depth_of(node: str) -> int:
        if node not in depth:
            depth[node] = 1 + max((depth_of(source) for source in inputs[node]), default=-1)
        return depth[node]

    columns = defaultdict(list)
    for node in sorted(nodes, key=int):
        columns[depth_of(node)].append(node)
    for node, n in nodes.items():
        width, height = measured[node]["size"]
        n["size"] = [
            max(math.ceil(width), 10 * math.ceil((measured[node]["title_width"] * TITLE_SLACK + 2 * bar) / 10)),
            math.ceil(height),
        ]
    top = TOP + max((note["size"][1] + GAP_Y + bar for note in notes), default=0)
    row: dict[str, float] = {}
    x = LEFT
    for column in (columns[d] for d in sorted(columns)):
        column.sort(key=lambda node: sum(row[s] for s in inputs[node]) / len(inputs[node]) if inputs[node] else 0)
        y = top
        for i, node in enumerate(column):
            row[node] = i
            nodes[node]["pos"] = [x, y]
            y += nodes[node]["size"][1] + GAP_Y + bar
        x += max(nodes[node]["size"][0] for node in column) + GAP_X
    x, next_id = LEFT, max(map(int, nodes)) + 1
    for note in notes:
        workflow["nodes"].append(note | {"id": next_id, "pos": [x, TOP], "order": len(workflow["nodes"])})
        x, next_id = x + note["size"][0] + GAP_X, next_id + 1
    workflow["last_node_id"] = next_id - 1
    workflow["extra"]["ds"] = {"scale": 1, "offset": [0, 0]}  # the view opens on the top left
    return workflow


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
            old = json.loads(dst.read_text()) if dst.exists() else {"nodes": []}
            workflow = api_to_ui(ui.page, api)
            workflow = lay_out(workflow, node_boxes(ui.page), [n for n in old["nodes"] if n["type"] in NOTE_TYPES])
            back = load_ui_workflow(ui.page, workflow)
            diff = prompt_diff(api, back["prompt_output"], ui.object_info)
            if back["missing_types"] or diff:
                print(
                    f"{src}: the frontend does not give the same prompt back "
                    f"(API file vs frontend; missing types {back['missing_types']}):",
                    file=sys.stderr,
                )
                print("\n".join(diff), file=sys.stderr)
                return 1
            hidden = layout_problems(node_boxes(ui.page))
            if hidden:
                print(f"{src}: the layout hides part of the graph:\n" + "\n".join(hidden), file=sys.stderr)
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
