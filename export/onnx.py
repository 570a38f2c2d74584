"""PyTorch -> ONNX: trace `ExportWrapper`, fold input-independent subgraphs to constants, attach the metadata.

Two exporters exist in torch 2.13: `dynamo` (torch.export + onnxscript, the default here: fewer nodes,
BatchNorm fused into Conv by its optimizer) and `legacy` (TorchScript tracing). Both give a static-shape graph
for batch 1. Neither folds everything that does not depend on the inputs: onnxscript's optimizer skips tensors
over 8192 elements and Split nodes, so the decoder's learned queries still go through its first self-attention
at run time. `fold_constants` evaluates every node whose inputs are all constants once with ONNX Runtime and
stores the results as initializers: the query path, the 1-D position embeddings, the image sine embedding.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from edgeact.export.artifact import METADATA_KEY, PolicySpec, sha256_bytes
from edgeact.export.errors import ExportError
from edgeact.export.wrap import ExportWrapper, random_inputs, to_torch_args
from onnx import helper, numpy_helper

log = logging.getLogger(__name__)

# The dynamo exporter writes opset 18 natively (its conversion down to 17 emits invalid Split nodes);
# TensorRT 10 (JetPack 6.1+) reads it. For TensorRT 8.6 use `--exporter legacy --opset 17`.
DEFAULT_OPSET = 18
EXPORTERS = ("dynamo", "legacy")
# Never evaluated ahead of time: random ops must stay random, control flow carries subgraphs.
_NO_FOLD = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Bernoulli",
    "Multinomial",
}
_NO_FOLD |= {"If", "Loop", "Scan"}


@dataclass(frozen=True)
class GraphStats:
    """Size of a graph: node count, initializer count and bytes of the serialized model."""

    nodes: int
    initializers: int
    bytes: int
    ops: dict[str, int]

    @classmethod
    def of(cls, model: onnx.ModelProto) -> GraphStats:
        ops: dict[str, int] = {}
        for node in model.graph.node:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
        return cls(len(model.graph.node), len(model.graph.initializer), model.ByteSize(), ops)


@dataclass(frozen=True)
class FoldReport:
    """What `fold_constants` did: nodes evaluated ahead of time and the graph before and after."""

    folded_nodes: int
    new_initializers: int
    before: GraphStats
    after: GraphStats
    folded_ops: dict[str, int]


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
    return {v.name: v.type.tensor_type.elem_type for v in infos if v.type.HasField("tensor_type")}


def _is_foldable(node: onnx.NodeProto, const: set[str]) -> bool:
    if node.op_type in _NO_FOLD or node.domain not in ("", "ai.onnx"):
        return False
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return False
    return all(name == "" or name in const for name in node.input)


def _evaluate(model: onnx.ModelProto, nodes: list[onnx.NodeProto], names: list[str]) -> list[np.ndarray]:
    """Run `nodes` over the initializers they read with ONNX Runtime (no graph rewrites); return `names`."""
    import onnxruntime as ort

    read = {n for node in nodes for n in node.input}
    inits = [t for t in model.graph.initializer if t.name in read]
    graph = helper.make_graph(nodes, "fold", inputs=[], outputs=[], initializer=inits)
    sub = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    types = _value_types(sub)
    missing = [n for n in names if not types.get(n)]
    if missing:
        raise ExportError(f"constant folding: no type inferred for {missing[:5]}")
    sub.graph.output.extend(helper.make_tensor_value_info(n, types[n], None) for n in names)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(sub.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(names, {})


def fold_constants(model: onnx.ModelProto) -> tuple[onnx.ModelProto, FoldReport]:
    """Replace every subgraph that depends on no graph input by initializers holding its value."""
    before = GraphStats.of(model)
    graph = model.graph
    inputs = {i.name for i in graph.input}
    const = {t.name for t in graph.initializer if t.name not in inputs}
    folded, kept = [], []
    for node in graph.node:  # ONNX graphs are topologically sorted
        if _is_foldable(node, const):
            folded.append(node)
            const.update(o for o in node.output if o)
        else:
            kept.append(node)
    used = {n for node in kept for n in node.input} | {o.name for o in graph.output}
    needed = [o for node in folded for o in node.output if o in used and o not in inputs]
    values = _evaluate(model, folded, needed) if needed else []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(kept)
    keep_init = [t for t in graph.initializer if t.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep_init)
    out.graph.initializer.extend(
        numpy_helper.from_array(np.asarray(v), n) for n, v in zip(needed, values, strict=True)
    )
    folded_names = set(needed)
    kept_vi = [v for v in graph.value_info if v.name not in folded_names and v.name in used]
    del out.graph.value_info[:]
    out.graph.value_info.extend(kept_vi)
    onnx.checker.check_model(out)
    folded_ops: dict[str, int] = {}
    for node in folded:
        folded_ops[node.op_type] = folded_ops.get(node.op_type, 0) + 1
    report = FoldReport(len(folded), len(needed), before, GraphStats.of(out), folded_ops)
    log.info(
        "folded %d nodes into %d initializers: %d -> %d nodes",
        len(folded),
        len(needed),
        before.nodes,
        report.after.nodes,
    )
    return out, report


def _trace(wrapper: ExportWrapper, spec: PolicySpec, exporter: str, opset: int) -> onnx.ModelProto:
    args = to_torch_args(spec, random_inputs(spec, np.random.default_rng(0)))
    names = {"input_names": spec.input_names, "output_names": ["action"], "opset_version": opset}
    with warnings.catch_warnings():
        # The exporters warn about their internals (tracer notes, version conversion), not the user's model.
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            program = torch.onnx.export(
                wrapper, args, dynamo=True, optimize=True, external_data=False, verbose=False, **names
            )
            return program.model_proto
        buf = io.BytesIO()
        torch.onnx.export(wrapper, args, buf, dynamo=False, do_constant_folding=True, **names)
        return onnx.load_from_string(buf.getvalue())


def export_onnx(
    policy: torch.nn.Module,
    spec: PolicySpec,
    *,
    exporter: str = "dynamo",
    opset: int = DEFAULT_OPSET,
    fold: bool = True,
) -> tuple[onnx.ModelProto, FoldReport | None]:
    """Trace the policy's inference path into an in-memory ONNX model (no metadata yet)."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    policy.eval()
    wrapper = ExportWrapper(policy, spec).eval()
    try:
        model = _trace(wrapper, spec, exporter, opset)
    except Exception as err:  # the exporters raise many types; all mean the same to the user
        root: BaseException = err
        while root.__cause__ is not None:
            root = root.__cause__
        first = (str(root).strip().splitlines() or [""])[0]
        raise ExportError(
            f"torch.onnx.export ({exporter}, opset {opset}) failed: {type(root).__name__}: {first}"
        ) from err
    if model.ByteSize() >= 2**31 - 1:
        raise ExportError("the policy is over 2 GB; a single-file ONNX cannot hold it")
    report = None
    if fold:
        model, report = fold_constants(model)
    model.producer_name = "edgeact"
    return model, report


def graph_sha256(model: onnx.ModelProto) -> str:
    """sha256 of the serialized graph (nodes, initializers, I/O), independent of the metadata."""
    return sha256_bytes(model.graph.SerializeToString(deterministic=True))


def embed_metadata(model: onnx.ModelProto, sidecar: dict[str, Any]) -> bytes:
    """The model with `sidecar` (its own hash left out) under `metadata_props[edgeact.policy]`, serialized."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    props = [p for p in out.metadata_props if p.key != METADATA_KEY]
    del out.metadata_props[:]
    out.metadata_props.extend(props)
    embedded = dict(sidecar, model_sha256=None)
    helper.set_model_props(out, {**{p.key: p.value for p in props}, METADATA_KEY: json.dumps(embedded)})
    return out.SerializeToString()


def read_metadata(model: onnx.ModelProto) -> dict[str, Any] | None:
    """The embedded sidecar, or None when the model has none."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return None
