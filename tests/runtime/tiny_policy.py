"""Small hand-built ONNX policies with their sidecars (docs/design.md "Policy artifact"), for rt-run tests.

The graph is real ONNX run by the real ONNX Runtime, but tiny: the chunk walks from the observed state toward
a fixed target, entry j = state + (j + 1) / k * (target - state), plus 0 * mean(image) so the camera input is
used, plus `ENV_GAIN` * mean(environment state) when the policy takes one (a keypoint policy: no camera,
`observation.environment_state`). A NaN target makes every output NaN (a model fault). The sidecar's I/O part
is written through `edgeact.runtime.policy_io`, the one definition of the contract.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from edgeact.runtime.policy_io import (
    ENV_STATE,
    IMAGE_RESIZE,
    SCHEMA_VERSION,
    STATE,
    CameraInput,
    PolicyIO,
    VectorInput,
)
from onnx import TensorProto, helper, numpy_helper

ENV_GAIN = 0.05  # action shift per unit of the environment state's mean


def build_tiny_policy(
    out_dir: Path,
    *,
    cameras: tuple[tuple[str, int, int], ...] = (("image", 96, 96),),
    state_names: tuple[str, ...] = ("motor_0", "motor_1"),
    env_state_names: tuple[str, ...] = (),
    action_names: tuple[str, ...] = ("motor_0", "motor_1"),
    target: tuple[float, ...] = (256.0, 256.0),
    chunk_size: int = 10,
    fps: float = 10,
    execution: dict | None = None,
    name: str = "policy",
) -> Path:
    """Write `<name>.onnx` + `<name>.json` into out_dir; returns the model path. `env_state_names` non-empty
    adds the `observation.environment_state` input."""
    out_dir.mkdir(parents=True, exist_ok=True)
    s, a, k = len(state_names), len(action_names), chunk_size
    assert s == a, "the tiny policy moves the state toward the target"
    vectors = (VectorInput(STATE, tuple(state_names)),)
    if env_state_names:
        vectors += (VectorInput(ENV_STATE, tuple(env_state_names)),)
    io = PolicyIO(
        cameras=tuple(CameraInput(cam, h, w) for cam, h, w in cameras),
        vectors=vectors,
        action_names=tuple(action_names),
        chunk_size=k,
    )
    inputs, nodes, inits, image_terms = [], [], [], []
    for i, cam in enumerate(io.cameras):
        inputs.append(helper.make_tensor_value_info(cam.input_name, TensorProto.UINT8, cam.shape))
        nodes.append(helper.make_node("Cast", [cam.input_name], [f"img{i}_f"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("ReduceMean", [f"img{i}_f"], [f"img{i}_m"], keepdims=0))
        image_terms.append(f"img{i}_m")
    for vec in io.vectors:
        inputs.append(helper.make_tensor_value_info(vec.input_name, TensorProto.FLOAT, [1, vec.dim]))
    steps = ((np.arange(k, dtype=np.float32) + 1) / k).reshape(1, k, 1)  # (1, k, 1)
    inits += [
        numpy_helper.from_array(np.asarray(target, np.float32).reshape(1, a), "target"),
        numpy_helper.from_array(steps, "steps"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(ENV_GAIN, np.float32), "env_gain"),
    ]
    nodes += [
        helper.make_node("Sub", ["target", STATE], ["delta"]),  # (1, A)
        helper.make_node("Unsqueeze", ["delta", "axis1"], ["delta3"]),  # (1, 1, A)
        helper.make_node("Unsqueeze", [STATE, "axis1"], ["state3"]),  # (1, 1, A)
        helper.make_node("Mul", ["steps", "delta3"], ["ramp"]),  # (1, k, A)
        helper.make_node("Add", ["state3", "ramp"], ["walk"]),
    ]
    acc = "walk"
    for i, term in enumerate(image_terms):
        nodes.append(helper.make_node("Mul", [term, "zero"], [f"z{i}"]))
        nodes.append(helper.make_node("Add", [acc, f"z{i}"], [f"acc{i}"]))
        acc = f"acc{i}"
    if env_state_names:
        nodes += [
            helper.make_node("ReduceMean", [ENV_STATE], ["env_m"], keepdims=0),  # scalar
            helper.make_node("Mul", ["env_m", "env_gain"], ["env_shift"]),
            helper.make_node("Add", [acc, "env_shift"], ["with_env"]),
        ]
        acc = "with_env"
    nodes.append(helper.make_node("Identity", [acc], ["action"]))
    model_path = out_dir / f"{name}.onnx"
    sha256 = write_action_graph(model_path, "tiny_policy", nodes, inputs, inits, k, a)
    zeros, ones = [0.0] * s, [1.0] * s
    stats = {
        STATE: {"mean": zeros, "std": ones, "min": zeros, "max": ones},
        "action": {"mean": zeros, "std": ones, "min": zeros, "max": ones},
    }
    write_sidecar(model_path, io, sha256, fps=fps, execution=execution, stats=stats)
    return model_path


def write_sidecar(
    model_path: Path, io: PolicyIO, sha256: str, *, fps: float, execution: dict | None, stats: dict
) -> Path:
    """`policy.json` beside `model_path`: the I/O part from `PolicyIO.to_json()`, then the rest."""
    sidecar = {
        "schema_version": SCHEMA_VERSION,
        "format": "onnx",
        "model_file": model_path.name,
        "model_sha256": sha256,
        **io.to_json(),
        "fps": fps,
        "normalization": {"inside_graph": True, "stats": stats},
        "image_resize": IMAGE_RESIZE,
        "execution": execution
        or {"mode": "ensemble", "temporal_ensemble_coeff": 0.01, "n_action_steps": io.chunk_size},
        "train_config": {},
        "engine": None,
        "parity": {"max_abs_err": 0.0, "max_rel_err": 0.0, "tolerance": 1e-5},
    }
    path = model_path.with_suffix(".json")
    path.write_text(json.dumps(sidecar, indent=2))
    return path


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
