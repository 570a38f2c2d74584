"""Small ONNX graphs following the policy I/O contract, with a known function of every input (core tests).

out[0, j, a] = sum_c(sum(float(image_c) * Wc) / numel_c) * C[j, a] + sum_v (vector_v @ S_v)[a] + B[j, a]
               + 0 * log(vector_0[0] + 10)        # NaN when vector_0[0] < -10: a model fault on demand
Every pixel and every vector element has its own weight, so a resize or layout error, or a vector that does
not reach its graph input, changes the output. Cameras and vectors may each be empty (not both), as in a PushT
keypoint policy: no camera, `observation.state` (2) and `observation.environment_state` (16).
The sidecar's I/O part is written through `edgeact.runtime.policy_io`, the one definition of the contract.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from edgeact.runtime.policy_io import STATE, CameraInput, PolicyIO, VectorInput
from onnx import TensorProto, helper, numpy_helper
from tiny_policy import write_action_graph, write_sidecar

KEYPOINT_VECTORS = ((STATE, 2), ("observation.environment_state", 16))  # a PushT keypoint policy's inputs


def vector_inputs(vectors: tuple[tuple[str, int | tuple[str, ...]], ...]) -> tuple[VectorInput, ...]:
    """(feature, dim or element names) pairs -> VectorInputs; generated names are `<short>_<i>` (`s<i>` for
    the state)."""
    out = []
    for feature, spec in vectors:
        if isinstance(spec, int):
            short = "s" if feature == STATE else feature.rsplit(".", 1)[-1] + "_"
            spec = tuple(f"{short}{i}" for i in range(spec))
        out.append(VectorInput(feature, tuple(spec)))
    return tuple(out)


def build_graph_policy(
    out_dir: Path,
    *,
    cameras: tuple[tuple[str, int, int, str], ...] = (("image", 12, 16, "NHWC"),),
    state_dim: int = 3,
    vectors: tuple[tuple[str, int | tuple[str, ...]], ...] | None = None,
    action_dim: int = 2,
    action_names: tuple[str, ...] | None = None,
    chunk_size: int = 6,
    fps: float = 50.0,
    execution: dict | None = None,
    seed: int = 0,
    name: str = "policy",
) -> Path:
    """Write `<name>.onnx` + `<name>.json`; returns the model path. `vectors` (feature, dim or names) pairs in
    graph order replace the default single state of `state_dim` values."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    k, a = chunk_size, action_dim
    vecs = vector_inputs(((STATE, state_dim),) if vectors is None else vectors)
    io = PolicyIO(
        cameras=tuple(CameraInput(cam, h, w, 3, layout) for cam, h, w, layout in cameras),
        vectors=vecs,
        action_names=action_names or tuple(f"a{i}" for i in range(a)),
        chunk_size=k,
    )
    inputs, nodes, terms = [], [], []
    inits = [
        numpy_helper.from_array(rng.uniform(-1, 1, (1, k, a)).astype(np.float32), "C"),
        numpy_helper.from_array(rng.uniform(-1, 1, (1, k, a)).astype(np.float32), "B"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([0], np.int64), "i0"),
        numpy_helper.from_array(np.array([1], np.int64), "i1"),
        numpy_helper.from_array(np.array(10.0, np.float32), "ten"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    image_sums = []
    for i, cam in enumerate(io.cameras):
        inputs.append(helper.make_tensor_value_info(cam.input_name, TensorProto.UINT8, cam.shape))
        weight = rng.uniform(-1, 1, cam.shape).astype(np.float32) / float(cam.height * cam.width * 3)
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes += [
            helper.make_node("Cast", [cam.input_name], [f"f{i}"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"f{i}", f"w{i}"], [f"p{i}"]),
            helper.make_node("ReduceSum", [f"p{i}"], [f"r{i}"], keepdims=0),  # scalar
        ]
        image_sums.append(f"r{i}")
    if image_sums:
        acc = image_sums[0]
        for i, t in enumerate(image_sums[1:]):
            nodes.append(helper.make_node("Add", [acc, t], [f"isum{i}"]))
            acc = f"isum{i}"
        nodes.append(helper.make_node("Mul", ["C", acc], ["img_term"]))  # (1, k, A)
        terms.append("img_term")
    for i, vec in enumerate(io.vectors):
        inputs.append(helper.make_tensor_value_info(vec.input_name, TensorProto.FLOAT, [1, vec.dim]))
        inits.append(numpy_helper.from_array(rng.uniform(-1, 1, (vec.dim, a)).astype(np.float32), f"S{i}"))
        nodes += [
            helper.make_node("MatMul", [vec.input_name, f"S{i}"], [f"va{i}"]),  # (1, A)
            helper.make_node("Unsqueeze", [f"va{i}", "axis1"], [f"vterm{i}"]),  # (1, 1, A)
        ]
        terms.append(f"vterm{i}")
    if io.vectors:
        first = io.vectors[0].input_name
        nodes += [
            helper.make_node("Slice", [first, "i0", "i1", "axis1"], ["v0"]),  # (1, 1)
            helper.make_node("Add", ["v0", "ten"], ["v0p"]),
            helper.make_node("Log", ["v0p"], ["logv"]),
            helper.make_node("Mul", ["logv", "zero"], ["trap"]),  # 0, or NaN when vector_0[0] < -10
            helper.make_node("Unsqueeze", ["trap", "axis1"], ["trap3"]),  # (1, 1, 1)
        ]
        terms.append("trap3")
    acc = "B"  # (1, k, A): every sum below broadcasts to it
    for i, t in enumerate(terms):
        out = "action" if i == len(terms) - 1 else f"t{i}"
        nodes.append(helper.make_node("Add", [acc, t], [out]))
        acc = out
    path = out_dir / f"{name}.onnx"
    sha256 = write_action_graph(path, "graph_policy", nodes, inputs, inits, k, a)
    write_sidecar(path, io, sha256, fps=fps, execution=execution, stats={})
    return path


def ort_infer(model_path: Path):
    """onnxruntime's Python API on the same graph: feed dict -> (1, k, A)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    return lambda feed: sess.run(None, feed)[0]
