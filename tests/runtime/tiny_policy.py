"""Small hand-built ONNX policies with their sidecars (docs/design.md "Policy artifact"), for rt-run tests.

The graph is real ONNX run by the real ONNX Runtime, but tiny: the chunk walks from the observed state toward
a fixed target, entry j = state + (j + 1) / k * (target - state), plus 0 * mean(image) so the camera input is
used. A NaN target makes every output NaN (a model fault).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build_tiny_policy(
    out_dir: Path,
    *,
    cameras: tuple[tuple[str, int, int], ...] = (("image", 96, 96),),
    state_names: tuple[str, ...] = ("motor_0", "motor_1"),
    action_names: tuple[str, ...] = ("motor_0", "motor_1"),
    target: tuple[float, ...] = (256.0, 256.0),
    chunk_size: int = 10,
    fps: float = 10,
    execution: dict | None = None,
    name: str = "policy",
) -> Path:
    """Write `<name>.onnx` + `<name>.json` into out_dir; returns the model path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    s, a, k = len(state_names), len(action_names), chunk_size
    assert s == a, "the tiny policy moves the state toward the target"
    inputs, nodes, inits, image_terms = [], [], [], []
    cam_specs, input_specs = [], []
    for i, (cam, h, w) in enumerate(cameras):
        feature = "observation.image" if cam == "image" else f"observation.images.{cam}"
        inputs.append(helper.make_tensor_value_info(feature, TensorProto.UINT8, [1, h, w, 3]))
        nodes.append(helper.make_node("Cast", [feature], [f"img{i}_f"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("ReduceMean", [f"img{i}_f"], [f"img{i}_m"], keepdims=0))
        image_terms.append(f"img{i}_m")
        cam_specs.append({"name": cam, "feature": feature, "height": h, "width": w, "channels": 3})
        input_specs.append(
            {
                "name": feature,
                "feature": feature,
                "kind": "image",
                "camera": cam,
                "dtype": "uint8",
                "shape": [1, h, w, 3],
                "layout": "NHWC",
            }
        )
    inputs.append(helper.make_tensor_value_info("observation.state", TensorProto.FLOAT, [1, s]))
    input_specs.append(
        {
            "name": "observation.state",
            "feature": "observation.state",
            "kind": "state",
            "dtype": "float32",
            "shape": [1, s],
        }
    )
    steps = ((np.arange(k, dtype=np.float32) + 1) / k).reshape(1, k, 1)  # (1, k, 1)
    inits += [
        numpy_helper.from_array(np.asarray(target, np.float32).reshape(1, a), "target"),
        numpy_helper.from_array(steps, "steps"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes += [
        helper.make_node("Sub", ["target", "observation.state"], ["delta"]),  # (1, A)
        helper.make_node("Unsqueeze", ["delta", "axis1"], ["delta3"]),  # (1, 1, A)
        helper.make_node("Unsqueeze", ["observation.state", "axis1"], ["state3"]),  # (1, 1, A)
        helper.make_node("Mul", ["steps", "delta3"], ["ramp"]),  # (1, k, A)
        helper.make_node("Add", ["state3", "ramp"], ["walk"]),
    ]
    acc = "walk"
    for i, term in enumerate(image_terms):
        nodes.append(helper.make_node("Mul", [term, "zero"], [f"z{i}"]))
        nodes.append(helper.make_node("Add", [acc, f"z{i}"], [f"acc{i}"]))
        acc = f"acc{i}"
    nodes.append(helper.make_node("Identity", [acc], ["action"]))
    model_path = out_dir / f"{name}.onnx"
    sha256 = write_action_graph(model_path, "tiny_policy", nodes, inputs, inits, k, a)
    zeros, ones = [0.0] * s, [1.0] * s
    sidecar = {
        "schema_version": 1,
        "format": "onnx",
        "model_file": model_path.name,
        "model_sha256": sha256,
        "inputs": input_specs,
        "outputs": [{"name": "action", "feature": "action", "dtype": "float32", "shape": [1, k, a]}],
        "cameras": cam_specs,
        "chunk_size": k,
        "fps": fps,
        "state_names": list(state_names),
        "action_names": list(action_names),
        "normalization": {
            "inside_graph": True,
            "stats": {
                "observation.state": {"mean": zeros, "std": ones, "min": zeros, "max": ones},
                "action": {"mean": zeros, "std": ones, "min": zeros, "max": ones},
            },
        },
        "image_resize": "bilinear_half_pixel",
        "execution": execution or {"mode": "ensemble", "temporal_ensemble_coeff": 0.01, "n_action_steps": k},
        "train_config": {},
        "engine": None,
        "parity": {"max_abs_err": 0.0, "max_rel_err": 0.0, "tolerance": 1e-5},
    }
    (out_dir / f"{name}.json").write_text(json.dumps(sidecar, indent=2))
    return model_path


def write_action_graph(
    path: Path, graph_name: str, nodes: list, inputs: list, inits: list, k: int, a: int
) -> str:
    """Check and write an opset-17 graph whose one output is `action` (1, k, A); returns the file's sha256."""
    output = helper.make_tensor_value_info("action", TensorProto.FLOAT, [1, k, a])
    graph = helper.make_graph(nodes, graph_name, inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return hashlib.sha256(path.read_bytes()).hexdigest()
