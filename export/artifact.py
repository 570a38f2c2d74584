"""The policy artifact's metadata (docs/design.md "Policy artifact"), built from a checkpoint's config.

`PolicySpec` is everything export needs to know about a checkpoint's inputs and outputs (cameras and their
resolution, state and action sizes and names, chunk size, fps, stats), read from the checkpoint's config.json.
`build_sidecar` turns it into the JSON that goes next to the model file (`policy.json`) and into the ONNX
`metadata_props` under `edgeact.policy`; `write_artifact` writes model and sidecar atomically (temp, rename).
This module imports no torch, so the TensorRT path on the target can use it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeact.export.errors import CheckpointError, OutputPathError
from edgeact.runtime.artifact_commit import commit_pair
from edgeact.runtime.policy_io import (
    ACTION,
    ENV_STATE,
    IMAGE_RESIZE,
    METADATA_KEY,
    READABLE_SCHEMA_VERSIONS,
    SCHEMA_VERSION,
    STATE,
    VECTOR_FEATURES,
    CameraInput,
    PolicyIO,
    VectorInput,
    camera_name,
    is_camera_feature,
    parse_io,
    sidecar_path,
)

__all__ = [
    "ACTION", "ENV_STATE", "METADATA_KEY", "SCHEMA_VERSION", "STATE", "CameraInput", "PolicySpec",
    "VectorInput", "build_sidecar", "check_output_path", "check_sidecar", "sha256_bytes", "sidecar_path",
    "spec_from_checkpoint_config", "spec_from_sidecar", "write_artifact",
]  # fmt: skip
STATE_FEATURE, ENV_STATE_FEATURE, ACTION_FEATURE = STATE, ENV_STATE, ACTION
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicySpec:
    """Inputs, outputs (`io`, the one I/O contract) and metadata of one exported policy (batch size 1)."""

    io: PolicyIO
    fps: float
    stats: dict[str, Any] = field(default_factory=dict)
    execution: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    dataset_id: str | None = None

    cameras = property(lambda self: self.io.cameras)
    vectors = property(lambda self: self.io.vectors)
    chunk_size = property(lambda self: self.io.chunk_size)
    action_dim = property(lambda self: self.io.action_dim)
    action_names = property(lambda self: self.io.action_names)
    state_names = property(lambda self: self.io.state_names)
    input_names = property(lambda self: self.io.input_names)

    @property
    def state_dim(self) -> int:
        return len(self.io.state_names)

    def action_mean_std(self) -> tuple[list[float], list[float]]:
        """The action stats the graph unnormalizes with; parity is measured on actions normalized by them."""
        stats = self.stats[ACTION]
        return [float(v) for v in stats["mean"]], [float(v) for v in stats["std"]]


def _image_hwc(feature: str, info: dict[str, Any], where: str) -> tuple[int, int, int]:
    """(H, W, C) of an info.json image feature: `names` say the layout, else the 3 marks the channels."""
    shape = [int(d) for d in info.get("shape", [])]
    if len(shape) != 3:
        raise CheckpointError(f"{where}: dataset.features[{feature!r}].shape must have 3 dims, got {shape}")
    names = [str(n).lower() for n in (info.get("names") or [])]
    if len(names) == 3 and "height" in names and "width" in names:
        h, w = shape[names.index("height")], shape[names.index("width")]
        return h, w, sum(shape) - h - w
    if shape[0] in (1, 3) and shape[2] not in (1, 3):
        return shape[1], shape[2], shape[0]
    return shape[0], shape[1], shape[2]


def _names(info: dict[str, Any], dim: int) -> tuple[str, ...]:
    names = info.get("names")
    if isinstance(names, dict):  # LeRobot sometimes writes {"motors": [...]}
        names = next(iter(names.values()), None)
    if isinstance(names, list) and len(names) == dim:
        return tuple(str(n) for n in names)
    return tuple(f"{i}" for i in range(dim))


def _require_stats(stats: dict[str, Any], feature: str, where: str) -> None:
    entry = stats.get(feature)
    if not isinstance(entry, dict) or any(k not in entry for k in ("mean", "std")):
        raise CheckpointError(
            f"{where}: dataset.stats has no mean/std for {feature!r}; the graph cannot normalize it"
        )


def spec_from_checkpoint_config(doc: dict[str, Any], *, where: str = "config.json") -> PolicySpec:
    """A `PolicySpec` from a checkpoint's config.json (docs/design.md "Checkpoint"); names the bad field.

    Inputs: every camera of the checkpoint, then every vector feature it has (`observation.state`,
    `observation.environment_state`), in the I/O contract's order."""
    try:
        dataset, policy = doc["dataset"], doc["policy"]
        features, stats = dataset["features"], dataset.get("stats")
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{where}: missing section {err}") from err
    if not isinstance(stats, dict):
        raise CheckpointError(f"{where}: dataset.stats is missing; export needs the normalization stats")
    cam_keys = dataset.get("camera_keys") or [k for k in features if is_camera_feature(k)]
    vec_keys = [k for k in VECTOR_FEATURES if k in features]
    for key in [*cam_keys, *vec_keys, ACTION]:
        if key not in features:
            raise CheckpointError(f"{where}: dataset.features has no {key!r}")
        _require_stats(stats, key, where)
    execution = {
        "mode": policy.get("execution_mode", "ensemble"),
        "temporal_ensemble_coeff": policy.get("temporal_ensemble_coeff", 0.01),
        "n_action_steps": policy.get("n_action_steps") or policy.get("chunk_size"),  # None = the whole chunk
    }
    try:
        cameras = []
        for key in cam_keys:
            h, w, c = _image_hwc(key, features[key], where)
            cameras.append(CameraInput(camera_name(key), h, w, c))
        vectors = [VectorInput(k, _names(features[k], _dim(features[k], k, where))) for k in vec_keys]
        action_dim = _dim(features[ACTION], ACTION, where)
        io = PolicyIO(
            tuple(cameras), tuple(vectors), _names(features[ACTION], action_dim), int(policy["chunk_size"])
        )
        return PolicySpec(
            io=io,
            fps=float(dataset["fps"]),
            stats=copy.deepcopy(stats),
            execution=execution,
            train_config={
                "policy": policy,
                "train": doc.get("train", {}),
                "code_version": doc.get("code_version"),
            },
            dataset_id=dataset.get("id"),
        )
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{where}: {err}") from err


def _dim(info: dict[str, Any], key: str, where: str) -> int:
    shape = info.get("shape")
    if not isinstance(shape, list) or len(shape) != 1 or int(shape[0]) < 1:
        raise CheckpointError(f"{where}: dataset.features[{key!r}].shape must be [D], got {shape!r}")
    return int(shape[0])


def spec_from_sidecar(doc: dict[str, Any], *, where: str) -> PolicySpec:
    """A `PolicySpec` back from a sidecar (an ONNX artifact's metadata), to build engines on the target."""
    doc = check_sidecar(doc, where)
    try:
        io = parse_io(doc, where)
        return PolicySpec(
            io=io,
            fps=float(doc["fps"]),
            stats=doc["normalization"]["stats"],
            execution=doc.get("execution", {}),
            train_config=doc.get("train_config", {}),
            dataset_id=doc.get("dataset_id"),
        )
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: malformed policy metadata: {err}") from err


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_sidecar(
    spec: PolicySpec,
    *,
    fmt: str,
    model_file: str,
    model_sha256: str | None,
    graph_sha256: str,
    parity: dict[str, Any],
    engine: dict[str, Any] | None = None,
    quantization: str | None = None,
) -> dict[str, Any]:
    """The sidecar JSON; `model_sha256` is the file's hash (None in the copy embedded in the file itself)."""
    if fmt not in ("onnx", "tensorrt"):
        raise ValueError(f"format must be 'onnx' or 'tensorrt', got {fmt!r}")
    fps = int(spec.fps) if float(spec.fps).is_integer() else spec.fps
    return {
        "schema_version": SCHEMA_VERSION,
        "format": fmt,
        "model_file": model_file,
        "model_sha256": model_sha256,
        "graph_sha256": graph_sha256,
        **spec.io.to_json(),  # inputs, outputs, cameras, chunk_size, state_names, action_names
        "fps": fps,
        "normalization": {"inside_graph": True, "stats": spec.stats},
        "image_resize": IMAGE_RESIZE,
        "execution": dict(spec.execution),
        "quantization": quantization,
        "dataset_id": spec.dataset_id,
        "train_config": spec.train_config,
        "engine": engine,
        "parity": parity,
    }


def check_sidecar(doc: Any, where: str) -> dict[str, Any]:
    """Validate a sidecar read back from disk or from ONNX metadata: schema version and required keys."""
    if not isinstance(doc, dict):
        raise CheckpointError(f"{where}: the policy metadata is not a JSON object")
    version = doc.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        raise CheckpointError(
            f"{where}: policy schema_version {version!r}, this edgeact reads {list(READABLE_SCHEMA_VERSIONS)}"
        )
    for key in ("inputs", "outputs", "chunk_size", "normalization", "graph_sha256"):
        if key not in doc:
            raise CheckpointError(f"{where}: the policy metadata has no {key!r}")
    return doc


def check_output_path(path: Path, suffix: str) -> Path:
    """The model file to write: a folder (existing, or a path without a suffix, created with its parents)
    gets `policy<suffix>`; otherwise the file's folder is created when missing."""
    path = Path(path)
    if path.is_dir() or (not path.exists() and path.suffix == ""):
        path = path / f"policy{suffix}"
    if path.suffix != suffix:
        raise OutputPathError(f"{path}: the output file must end in {suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputPathError(f"{path}: cannot create the output folder {path.parent}: {err}") from err
    if not os.access(path.parent, os.W_OK):
        raise OutputPathError(f"{path}: the output folder {path.parent} is not writable")
    if not os.access(path.parent, os.W_OK):
        raise OutputPathError(f"{path}: the output folder {path.parent} is not writable")
    return path


def write_artifact(model_path: Path, model_bytes: bytes, sidecar: dict[str, Any]) -> tuple[Path, Path]:
    """Write the model file and its sidecar as one change (`edgeact.runtime.artifact_commit.commit_pair`:
    temporary files, a journal, two renames; a kill between them is rolled forward by the next reader)."""
    model_path = Path(model_path)
    json_path = sidecar_path(model_path)
    text = json.dumps(sidecar, indent=2, allow_nan=False) + "\n"
    try:
        commit_pair(model_path, model_bytes, json_path, text.encode())
    except OSError as err:
        raise OutputPathError(f"{model_path}: cannot write the policy artifact: {err}") from err
    log.info("wrote %s (%d bytes) and %s", model_path, len(model_bytes), json_path)
    return model_path, json_path
