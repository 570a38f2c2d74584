"""Small ONNX graphs following the policy I/O contract, with a known function of every input (core tests).

out[0, j, a] = sum_c(sum(float(image_c) * Wc) / numel_c) * C[j, a] + (state @ S)[a] + B[j, a]
               + 0 * log(state[0] + 10)        # NaN when state[0] < -10: a model fault on demand
Every pixel has its own weight, so a resize or layout error changes the output.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from tiny_policy import write_action_graph


def build_graph_policy(
    out_dir: Path,
    *,
    cameras: tuple[tuple[str, int, int, str], ...] = (("image", 12, 16, "NHWC"),),
    state_dim: int = 3,
    action_dim: int = 2,
    chunk_size: int = 6,
    fps: float = 50.0,
    execution: dict | None = None,
    seed: int = 0,
    name: str = "policy",
) -> Path:
    """Write `<name>.onnx` + `<name>.json`; returns the model path."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    k, a, s = chunk_size, action_dim, state_dim
    inputs, nodes, inits, terms, cam_specs, in_specs = [], [], [], [], [], []
    for i, (cam, h, w, layout) in enumerate(cameras):
        feature = "observation.image" if cam == "image" else f"observation.images.{cam}"
        shape = [1, h, w, 3] if layout == "NHWC" else [1, 3, h, w]
        inputs.append(helper.make_tensor_value_info(feature, TensorProto.UINT8, shape))
        weight = rng.uniform(-1, 1, shape).astype(np.float32) / float(h * w * 3)
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes += [
            helper.make_node("Cast", [feature], [f"f{i}"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"f{i}", f"w{i}"], [f"p{i}"]),
            helper.make_node("ReduceSum", [f"p{i}"], [f"r{i}"], keepdims=0),  # scalar
        ]
        terms.append(f"r{i}")
        cam_specs.append({"name": cam, "feature": feature, "height": h, "width": w, "channels": 3})
        in_specs.append({"name": feature, "feature": feature, "kind": "image", "camera": cam,
                         "dtype": "uint8", "shape": shape, "layout": layout})  # fmt: skip
    inputs.append(helper.make_tensor_value_info("observation.state", TensorProto.FLOAT, [1, s]))
    in_specs.append({"name": "observation.state", "feature": "observation.state", "kind": "state",
                     "dtype": "float32", "shape": [1, s]})  # fmt: skip
    inits += [
        numpy_helper.from_array(rng.uniform(-1, 1, (1, k, a)).astype(np.float32), "C"),
        numpy_helper.from_array(rng.uniform(-1, 1, (s, a)).astype(np.float32), "S"),
        numpy_helper.from_array(rng.uniform(-1, 1, (1, k, a)).astype(np.float32), "B"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([0], np.int64), "i0"),
        numpy_helper.from_array(np.array([1], np.int64), "i1"),
        numpy_helper.from_array(np.array(10.0, np.float32), "ten"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    acc = terms[0]
    for i, t in enumerate(terms[1:]):
        nodes.append(helper.make_node("Add", [acc, t], [f"sum{i}"]))
        acc = f"sum{i}"
    nodes += [
        helper.make_node("Mul", ["C", acc], ["img_term"]),  # (1, k, A)
        helper.make_node("MatMul", ["observation.state", "S"], ["sa"]),  # (1, A)
        helper.make_node("Unsqueeze", ["sa", "axis1"], ["sa3"]),  # (1, 1, A)
        helper.make_node("Slice", ["observation.state", "i0", "i1", "axis1"], ["s0"]),  # (1, 1)
        helper.make_node("Add", ["s0", "ten"], ["s0p"]),
        helper.make_node("Log", ["s0p"], ["logs"]),
        helper.make_node("Mul", ["logs", "zero"], ["trap"]),  # 0, or NaN when state[0] < -10
        helper.make_node("Unsqueeze", ["trap", "axis1"], ["trap3"]),  # (1, 1, 1)
        helper.make_node("Add", ["img_term", "sa3"], ["t1"]),
        helper.make_node("Add", ["t1", "B"], ["t2"]),
        helper.make_node("Add", ["t2", "trap3"], ["action"]),
    ]
    path = out_dir / f"{name}.onnx"
    sha256 = write_action_graph(path, "graph_policy", nodes, inputs, inits, k, a)
    sidecar = {
        "schema_version": 1, "format": "onnx", "model_file": path.name,
        "model_sha256": sha256,
        "inputs": in_specs,
        "outputs": [{"name": "action", "feature": "action", "dtype": "float32", "shape": [1, k, a]}],
        "cameras": cam_specs, "chunk_size": k, "fps": fps,
        "state_names": [f"s{i}" for i in range(s)], "action_names": [f"a{i}" for i in range(a)],
        "normalization": {"inside_graph": True, "stats": {}},
        "image_resize": "bilinear_half_pixel",
        "execution": execution or {"mode": "ensemble", "temporal_ensemble_coeff": 0.01, "n_action_steps": k},
        "train_config": {}, "engine": None,
        "parity": {"max_abs_err": 0.0, "max_rel_err": 0.0, "tolerance": 1e-5},
    }  # fmt: skip
    (out_dir / f"{name}.json").write_text(json.dumps(sidecar, indent=2))
    return path


def ort_infer(model_path: Path):
    """onnxruntime's Python API on the same graph: feed dict -> (1, k, A)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    return lambda feed: sess.run(None, feed)[0]
