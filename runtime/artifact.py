"""Reads and validates a policy artifact's sidecar `policy.json` (docs/design.md, "Policy artifact").

`load_artifact(path)` accepts the sidecar itself or the model file beside it (`policy.onnx` / `policy.engine`
-> `policy.json`; for an ONNX model without a sidecar file, the copy in its `metadata_props` under
`edgeact.policy` is read through onnxruntime). The inputs and outputs are read through the one I/O contract,
`edgeact.runtime.policy_io`; this module adds the rest of the sidecar (format, model file and hash, fps,
execution). Every error names the file and the field. Needs only numpy and the standard library (onnxruntime
only for the metadata fallback).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeact.runtime.ensemble_ref import ExecutionConfig
from edgeact.runtime.policy_io import (
    ACTION,
    FORMATS,
    IMAGE_RESIZE,
    METADATA_KEY,
    SCHEMA_VERSION,
    STATE,
    CameraInput,
    Fields,
    PolicyIO,
    VectorInput,
    parse_io,
    sidecar_path,
)

__all__ = [
    "METADATA_KEY", "SCHEMA_VERSION", "ArtifactError", "CameraInput", "PolicyArtifact", "VectorInput",
    "load_artifact", "parse_artifact", "sha256_file", "sidecar_path",
]  # fmt: skip


class ArtifactError(ValueError):
    """The sidecar or model file is missing, unreadable or inconsistent; the message names file and field."""


@dataclass(frozen=True)
class PolicyArtifact:
    """The validated sidecar. `io` is the policy's inputs and output; `raw` keeps the whole JSON object."""

    path: Path  # where the sidecar was read from (the model file for embedded metadata)
    format: str
    model_file: str
    model_sha256: str
    io: PolicyIO
    fps: float
    execution: ExecutionConfig
    image_resize: str
    raw: dict[str, Any]

    def model_path(self) -> Path:
        return self.path.parent / self.model_file

    # The I/O, as the runtime reads it.
    cameras = property(lambda self: self.io.cameras)
    vectors = property(lambda self: self.io.vectors)
    chunk_size = property(lambda self: self.io.chunk_size)
    action_dim = property(lambda self: self.io.action_dim)
    action_names = property(lambda self: self.io.action_names)
    state_names = property(lambda self: self.io.state_names)
    output_name = ACTION

    @property
    def state_input(self) -> str | None:
        return STATE if self.io.vector(STATE) is not None else None

    @property
    def state_dim(self) -> int:
        return len(self.io.state_names)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_artifact(path: str | Path) -> PolicyArtifact:
    """Read `policy.json` (or the sidecar of a model file) and validate it."""
    path = Path(path)
    if path.suffix != ".json" and not sidecar_path(path).is_file():
        if path.suffix == ".onnx" and path.is_file():
            return parse_artifact(_onnx_metadata(path), path)
        raise ArtifactError(
            f"{sidecar_path(path)}: policy sidecar not found (export writes it beside the model)"
        )
    json_path = path if path.suffix == ".json" else sidecar_path(path)
    try:
        data = json.loads(json_path.read_text())
    except FileNotFoundError as err:
        raise ArtifactError(f"{json_path}: file not found") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{json_path}: not readable JSON ({err})") from err
    return parse_artifact(data, json_path)


def _onnx_metadata(path: Path) -> dict[str, Any]:
    try:
        import onnxruntime as ort

        meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
        return json.loads(meta.custom_metadata_map[METADATA_KEY])
    except KeyError as err:
        raise ArtifactError(f"{path}: no sidecar file and no '{METADATA_KEY}' metadata in the model") from err
    except Exception as err:
        raise ArtifactError(f"{path}: cannot read the embedded '{METADATA_KEY}' metadata ({err})") from err


def parse_artifact(data: Any, where: Path) -> PolicyArtifact:
    """Validate a sidecar object (already parsed) read from `where`."""
    root = Fields(data, where, error=ArtifactError)
    io = parse_io(root, where, error=ArtifactError)
    fmt = root.get("format", str)
    if fmt not in FORMATS:
        raise root.fail("format", f"must be one of {sorted(FORMATS)}, got {fmt!r}")
    model_file = root.get("model_file", str)
    if not model_file.endswith(FORMATS[fmt]) or "/" in model_file:
        raise root.fail("model_file", f"must be a file name ending in {FORMATS[fmt]}, got {model_file!r}")
    sha = root.get("model_sha256", str)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise root.fail("model_sha256", "must be 64 lowercase hex digits")
    fps = root.finite("fps")
    if not fps > 0:
        raise root.fail("fps", f"must be a positive number, got {fps!r}")
    resize = root.get("image_resize", str, IMAGE_RESIZE)
    if resize != IMAGE_RESIZE:
        raise root.fail("image_resize", f"must be {IMAGE_RESIZE!r}, got {resize!r}")

    norm = root.child("normalization", root.get("normalization", dict, {"inside_graph": True}))
    if norm.get("inside_graph", bool, True) is not True:
        raise norm.fail("inside_graph", "must be true: the runtime feeds raw sensor units to the graph")
    exec_block = root.get("execution", dict, {})
    try:
        execution = ExecutionConfig.from_sidecar(
            exec_block, chunk_size=io.chunk_size, action_dim=io.action_dim
        )
    except (ValueError, TypeError, OverflowError) as err:
        raise ArtifactError(f"{where}: field 'execution' is invalid: {err}") from err
    return PolicyArtifact(
        path=where, format=fmt, model_file=model_file, model_sha256=sha, io=io, fps=fps,
        execution=execution, image_resize=resize, raw=data,
    )  # fmt: skip
