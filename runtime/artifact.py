"""Reads and validates a policy artifact's sidecar `policy.json` (docs/design.md, "Policy artifact").

`load_artifact(path)` accepts the sidecar itself or the model file beside it (`policy.onnx` / `policy.engine`
-> `policy.json`; for an ONNX model without a sidecar file, the copy in its `metadata_props` under
`edgeact.policy` is read through onnxruntime). Every error names the file and the field. Needs only numpy and
the standard library (onnxruntime only for the metadata fallback).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeact.runtime.ensemble_ref import ExecutionConfig

SCHEMA_VERSION = 1
METADATA_KEY = "edgeact.policy"
FORMATS = {"onnx": ".onnx", "tensorrt": ".engine"}


class ArtifactError(ValueError):
    """The sidecar or model file is missing, unreadable or inconsistent; the message names file and field."""


@dataclass(frozen=True)
class CameraInput:
    """One image input of the model: camera name, graph input name, the model's resolution and layout."""

    name: str
    input_name: str
    height: int
    width: int
    channels: int
    layout: str  # "NHWC" or "NCHW"


@dataclass(frozen=True)
class PolicyArtifact:
    """The validated sidecar. `raw` keeps the whole JSON object."""

    path: Path  # where the sidecar was read from (the model file for embedded metadata)
    format: str
    model_file: str
    model_sha256: str
    cameras: tuple[CameraInput, ...]
    state_input: str | None
    state_dim: int
    output_name: str
    chunk_size: int
    action_dim: int
    fps: float
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    execution: ExecutionConfig
    image_resize: str
    raw: dict[str, Any]

    def model_path(self) -> Path:
        return self.path.parent / self.model_file


def sidecar_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


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


class _Fields:
    """Typed access to one JSON object; errors name the file and the dotted field."""

    def __init__(self, data: Any, where: Path, prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise ArtifactError(f"{where}: field '{prefix or '<root>'}' must be an object")
        self.data, self.where, self.prefix = data, where, prefix

    def fail(self, key: str, msg: str) -> ArtifactError:
        return ArtifactError(f"{self.where}: field '{self.prefix}{key}' {msg}")

    def get(self, key: str, types: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is missing")
            return default
        value = self.data[key]
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise self.fail(key, f"has the wrong type (got {value!r})")
        if not isinstance(value, types):
            raise self.fail(key, f"has the wrong type (got {value!r})")
        return value

    def positive_int(self, key: str) -> int:
        value = self.get(key, int)
        if value < 1:
            raise self.fail(key, f"must be >= 1, got {value}")
        return value

    def names(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list)
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "must be a list of non-empty strings")
        return tuple(value)

    def child(self, key: str, value: Any) -> _Fields:
        return _Fields(value, self.where, f"{self.prefix}{key}.")


def parse_artifact(data: Any, where: Path) -> PolicyArtifact:
    """Validate a sidecar object (already parsed) read from `where`."""
    root = _Fields(data, where)
    version = root.get("schema_version", int)
    if version != SCHEMA_VERSION:
        raise root.fail("schema_version", f"is {version}; this runtime reads version {SCHEMA_VERSION}")
    fmt = root.get("format", str)
    if fmt not in FORMATS:
        raise root.fail("format", f"must be one of {sorted(FORMATS)}, got {fmt!r}")
    model_file = root.get("model_file", str)
    if not model_file.endswith(FORMATS[fmt]) or "/" in model_file:
        raise root.fail("model_file", f"must be a file name ending in {FORMATS[fmt]}, got {model_file!r}")
    sha = root.get("model_sha256", str)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise root.fail("model_sha256", "must be 64 lowercase hex digits")
    chunk_size, fps = root.positive_int("chunk_size"), root.get("fps", (int, float))
    if not (math.isfinite(fps) and fps > 0):
        raise root.fail("fps", f"must be a positive number, got {fps!r}")
    state_names, action_names = root.names("state_names"), root.names("action_names")
    resize = root.get("image_resize", str, "bilinear_half_pixel")
    if resize != "bilinear_half_pixel":
        raise root.fail("image_resize", f"must be 'bilinear_half_pixel', got {resize!r}")

    norm = root.child("normalization", root.get("normalization", dict, {"inside_graph": True}))
    if norm.get("inside_graph", bool, True) is not True:
        raise norm.fail("inside_graph", "must be true: the runtime feeds raw sensor units to the graph")
    cameras, state_input, state_dim = _parse_inputs(root, state_names)
    output_name, action_dim = _parse_output(root, chunk_size, action_names)
    exec_block = root.get("execution", dict, {})
    try:
        execution = ExecutionConfig.from_sidecar(exec_block, chunk_size=chunk_size, action_dim=action_dim)
    except (ValueError, TypeError) as err:
        raise ArtifactError(f"{where}: field 'execution' is invalid: {err}") from err
    return PolicyArtifact(
        path=where, format=fmt, model_file=model_file, model_sha256=sha, cameras=cameras,
        state_input=state_input, state_dim=state_dim, output_name=output_name, chunk_size=chunk_size,
        action_dim=action_dim, fps=float(fps), state_names=state_names, action_names=action_names,
        execution=execution, image_resize=resize, raw=data,
    )  # fmt: skip


def _parse_inputs(
    root: _Fields, state_names: tuple[str, ...]
) -> tuple[tuple[CameraInput, ...], str | None, int]:
    inputs = root.get("inputs", list)
    cams_field = root.get("cameras", list)
    cam_specs: dict[str, _Fields] = {}
    for i, c in enumerate(cams_field):
        f = root.child(f"cameras[{i}]", c)
        cam_specs[f.get("name", str)] = f
    cameras: list[CameraInput] = []
    state_input, state_dim = None, 0
    for i, item in enumerate(inputs):
        f = root.child(f"inputs[{i}]", item)
        name, kind, dtype = f.get("name", str), f.get("kind", str), f.get("dtype", str)
        shape = f.get("shape", list)
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
            raise f.fail("shape", f"must be a list of positive ints, got {shape!r}")
        if kind == "state":
            if dtype != "float32" or len(shape) != 2 or shape[0] != 1:
                raise f.fail("shape", f"of a state input must be float32 [1, S], got {dtype} {shape}")
            if state_input is not None:
                raise f.fail("kind", "names a second state input")
            state_input, state_dim = name, shape[1]
            if state_dim != len(state_names):
                raise f.fail("shape", f"has S={state_dim} but state_names has {len(state_names)} names")
            continue
        if kind != "image":
            raise f.fail("kind", f"must be 'image' or 'state', got {kind!r}")
        layout = f.get("layout", str, "NHWC")
        if dtype != "uint8" or len(shape) != 4 or shape[0] != 1 or layout not in ("NHWC", "NCHW"):
            raise f.fail(
                "shape", f"of an image input must be uint8 [1, H, W, C] NHWC or NCHW, got {dtype} {shape}"
            )
        h, w, c = (shape[1], shape[2], shape[3]) if layout == "NHWC" else (shape[2], shape[3], shape[1])
        cam_name = f.get("camera", str)
        spec = cam_specs.get(cam_name)
        if spec is None:
            raise f.fail("camera", f"names camera {cam_name!r}, which is not in 'cameras'")
        if (spec.get("height", int), spec.get("width", int), spec.get("channels", int, 3)) != (h, w, c):
            raise spec.fail("height", f"/width/channels disagree with input {name!r} shape {shape}")
        cameras.append(CameraInput(cam_name, name, h, w, c, layout))
    if len(cameras) != len(cam_specs):
        raise root.fail("cameras", "lists a camera that no image input uses")
    return tuple(cameras), state_input, state_dim


def _parse_output(root: _Fields, chunk_size: int, action_names: tuple[str, ...]) -> tuple[str, int]:
    outputs = root.get("outputs", list)
    if len(outputs) != 1:
        raise root.fail("outputs", f"must hold exactly one output (the action chunk), got {len(outputs)}")
    f = root.child("outputs[0]", outputs[0])
    name, dtype, shape = f.get("name", str), f.get("dtype", str), f.get("shape", list)
    if dtype != "float32" or len(shape) != 3 or shape[0] != 1 or shape[1] != chunk_size:
        raise f.fail("shape", f"must be float32 [1, chunk_size={chunk_size}, A], got {dtype} {shape}")
    if not isinstance(shape[2], int) or shape[2] != len(action_names):
        raise f.fail("shape", f"has A={shape[2]} but action_names has {len(action_names)} names")
    return name, shape[2]
