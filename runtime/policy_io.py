"""The policy I/O contract: the one definition of what an exported policy takes and gives (docs/design.md).

Export writes a policy's inputs and outputs through this module, the runtime reads them back through it, and
the tests build their sidecars with it; nothing else spells out the sidecar's I/O fields. Torch-free (standard
library only), so the robot computer has it.

- Names: LeRobot's feature keys (`observation.image`, `observation.images.<camera>`,
  `observation.state`, `observation.environment_state`, `action`), the camera name <-> feature key mapping,
  the sidecar path and the ONNX metadata key.
- Input kinds: `image` (uint8 `[1, H, W, C]` NHWC or `[1, C, H, W]` NCHW, one per camera) and `vector`
  (float32 `[1, D]`, any number: the state, the environment state, ...). Graph order: cameras, then vectors in
  `VECTOR_FEATURES` order (other vector features after them, by name).
- The output: one float32 `[1, chunk_size, A]` action chunk in robot units.
- Execution modes: how chunks become one action per tick (`ensemble`, `chunk`, `async`).

Sidecar schema 2 lists every vector with its element names; schema 1 (one `kind: "state"` input plus the
top-level `state_names`) is still read. Adding an input kind means one new dataclass here (and one field in
the C++ `ModelSpec`).

    io = PolicyIO(cameras=(CameraInput("image", 96, 96),),
                  vectors=(VectorInput(STATE, ("x", "y")),), action_names=("x", "y"), chunk_size=16)
    doc = {**io.to_json(), ...}            # inputs, outputs, cameras, chunk_size, action_names
    parse_io(doc, "policy.json") == io
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
METADATA_KEY = "edgeact.policy"  # the ONNX metadata_props key holding the embedded sidecar
FORMATS = {"onnx": ".onnx", "tensorrt": ".engine"}  # artifact format -> model file suffix

IMAGE_FEATURE = "observation.image"  # PushT's single camera, named `image`
IMAGES_PREFIX = "observation.images."
STATE = "observation.state"
ENV_STATE = "observation.environment_state"
ACTION = "action"
VECTOR_FEATURES = (STATE, ENV_STATE)  # the vector inputs ACT knows, in graph (and token) order

INPUT_KINDS = ("image", "vector")
LAYOUTS = ("NHWC", "NCHW")
EXECUTION_MODES = ("ensemble", "chunk", "async")
IMAGE_RESIZE = "bilinear_half_pixel"  # how the runtime resizes camera frames to the model's resolution


class PolicyIOError(ValueError):
    """The I/O section of a sidecar is malformed or inconsistent; the message names the file and field."""


def sidecar_path(model_path: str | Path) -> Path:
    """`policy.onnx` / `policy.engine` -> `policy.json`."""
    return Path(model_path).with_suffix(".json")


def is_camera_feature(key: str) -> bool:
    return key == IMAGE_FEATURE or key.startswith(IMAGES_PREFIX)


def camera_name(feature: str) -> str:
    """`observation.image` -> `image`; `observation.images.top` -> `top`."""
    return "image" if feature == IMAGE_FEATURE else feature.removeprefix(IMAGES_PREFIX)


def camera_feature(name: str) -> str:
    """The inverse of `camera_name`: `image` -> `observation.image`, `top` -> `observation.images.top`."""
    return IMAGE_FEATURE if name == "image" else f"{IMAGES_PREFIX}{name}"


def vector_order(feature: str) -> tuple[int, str]:
    """Sort key of vector features: the known ones in `VECTOR_FEATURES` order, then any other by name."""
    return (
        (VECTOR_FEATURES.index(feature), "")
        if feature in VECTOR_FEATURES
        else (len(VECTOR_FEATURES), feature)
    )


@dataclass(frozen=True)
class CameraInput:
    """One image input: the graph input named `feature` takes uint8 frames (height x width x channels)."""

    name: str
    height: int
    width: int
    channels: int = 3
    layout: str = "NHWC"

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise PolicyIOError(f"camera name must be non-empty without '/', got {self.name!r}")
        for fld in ("height", "width", "channels"):
            value = getattr(self, fld)
            if not _is_int(value) or value < 1:
                raise PolicyIOError(f"camera {self.name!r}: {fld} must be a positive int, got {value!r}")
        if self.layout not in LAYOUTS:
            raise PolicyIOError(f"camera {self.name!r}: layout must be one of {LAYOUTS}, got {self.layout!r}")

    @property
    def feature(self) -> str:
        return camera_feature(self.name)

    @property
    def input_name(self) -> str:
        return self.feature

    @property
    def shape(self) -> list[int]:
        if self.layout == "NHWC":
            return [1, self.height, self.width, self.channels]
        return [1, self.channels, self.height, self.width]

    def input_json(self) -> dict[str, Any]:
        return {"name": self.input_name, "feature": self.feature, "kind": "image", "camera": self.name,
                "dtype": "uint8", "shape": self.shape, "layout": self.layout}  # fmt: skip

    def camera_json(self) -> dict[str, Any]:
        return {"name": self.name, "feature": self.feature, "height": self.height, "width": self.width,
                "channels": self.channels}  # fmt: skip


@dataclass(frozen=True)
class VectorInput:
    """One float vector input: the graph input named `feature` takes float32 `(1, len(names))`."""

    feature: str
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.feature.startswith("observation.") or is_camera_feature(self.feature):
            raise PolicyIOError(
                f"vector input {self.feature!r}: must be an `observation.*` feature, not a camera"
            )
        if not self.names or not all(isinstance(n, str) and n for n in self.names):
            raise PolicyIOError(f"vector input {self.feature!r}: needs one non-empty name per element")

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def input_name(self) -> str:
        return self.feature

    def input_json(self) -> dict[str, Any]:
        return {"name": self.input_name, "feature": self.feature, "kind": "vector", "dtype": "float32",
                "shape": [1, self.dim], "names": list(self.names)}  # fmt: skip


@dataclass(frozen=True)
class PolicyIO:
    """A policy's inputs (cameras, then vectors) and its action-chunk output."""

    cameras: tuple[CameraInput, ...]
    vectors: tuple[VectorInput, ...]
    action_names: tuple[str, ...]
    chunk_size: int

    def __post_init__(self) -> None:
        if not self.cameras and not self.vectors:
            raise PolicyIOError("a policy needs at least one input (a camera or a vector)")
        cams = [c.name for c in self.cameras]
        if len(set(cams)) != len(cams):
            raise PolicyIOError(f"duplicate camera names {cams}")
        feats = [v.feature for v in self.vectors]
        if len(set(feats)) != len(feats):
            raise PolicyIOError(f"duplicate vector inputs {feats}")
        if feats != sorted(feats, key=vector_order):
            raise PolicyIOError(f"vector inputs must be in the order {list(VECTOR_FEATURES)}, got {feats}")
        if not self.action_names or not all(isinstance(n, str) and n for n in self.action_names):
            raise PolicyIOError("action_names must hold one non-empty name per action dimension")
        if not _is_int(self.chunk_size) or self.chunk_size < 1:
            raise PolicyIOError(f"chunk_size must be a positive int, got {self.chunk_size!r}")

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def input_names(self) -> list[str]:
        """Graph input names in graph order."""
        return [c.input_name for c in self.cameras] + [v.input_name for v in self.vectors]

    def vector(self, feature: str) -> VectorInput | None:
        return next((v for v in self.vectors if v.feature == feature), None)

    @property
    def state_names(self) -> tuple[str, ...]:
        """The names of `observation.state` (empty when the policy takes no state)."""
        state = self.vector(STATE)
        return state.names if state is not None else ()

    def outputs_json(self) -> list[dict[str, Any]]:
        shape = [1, self.chunk_size, self.action_dim]
        return [{"name": ACTION, "feature": ACTION, "dtype": "float32", "shape": shape}]

    def to_json(self) -> dict[str, Any]:
        """The sidecar's I/O fields (schema 2)."""
        return {
            "inputs": [c.input_json() for c in self.cameras] + [v.input_json() for v in self.vectors],
            "outputs": self.outputs_json(),
            "cameras": [c.camera_json() for c in self.cameras],
            "chunk_size": self.chunk_size,
            "state_names": list(self.state_names),
            "action_names": list(self.action_names),
        }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Fields:
    """Typed access to one JSON object; every error names the file and the dotted field."""

    def __init__(
        self, data: Any, where: str | Path, prefix: str = "", error: type[Exception] = PolicyIOError
    ):
        self.where, self.prefix, self.error = where, prefix, error
        if not isinstance(data, dict):
            raise self.error(f"{where}: field '{prefix.rstrip('.') or '<root>'}' must be an object")
        self.data = data

    def fail(self, key: str, msg: str) -> Exception:
        return self.error(f"{self.where}: field '{self.prefix}{key}' {msg}")

    def get(self, key: str, types: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is missing")
            return default
        value = self.data[key]
        allowed = types if isinstance(types, tuple) else (types,)
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            raise self.fail(key, f"has the wrong type (got {_short(value)})")
        return value

    def positive_int(self, key: str, limit: int = 1 << 31) -> int:
        value = self.get(key, int)
        if not 1 <= value <= limit:
            raise self.fail(key, f"must be in [1, {limit}], got {_short(value)}")
        return value

    def finite(self, key: str, default: Any = ...) -> float:
        value = self.get(key, (int, float), default)
        try:
            ok = math.isfinite(value)
        except OverflowError:
            ok = False
        if not ok:
            raise self.fail(key, f"must be a finite number, got {_short(value)}")
        return float(value)

    def names(self, key: str, default: Any = ...) -> tuple[str, ...]:
        value = self.get(key, list, default)
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "must be a list of non-empty strings")
        return tuple(value)

    def child(self, key: str, value: Any) -> Fields:
        return Fields(value, self.where, f"{self.prefix}{key}.", self.error)


def _short(value: Any) -> str:
    """A short repr for messages; safe for 5000-digit ints (str() refuses them) and deep nesting."""
    if _is_int(value) and abs(value) >= 10**30:
        return f"an int of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # a list nested beyond the recursion limit, or holding a huge int
        text = f"a {type(value).__name__} too deep or too large to show"
    return text if len(text) <= 60 else text[:57] + "..."


def parse_io(doc: Any, where: str | Path, *, error: type[Exception] = PolicyIOError) -> PolicyIO:
    """The `PolicyIO` of a sidecar object (schema 1 or 2), validated; `error`s name the file and field."""
    root = doc if isinstance(doc, Fields) else Fields(doc, where, error=error)
    try:
        return _parse_io(root)
    except (
        RecursionError
    ) as err:  # an object nested beyond the interpreter's limit (json.loads refuses those)
        raise root.error(f"{where}: the sidecar is nested too deeply") from err


def _parse_io(root: Fields) -> PolicyIO:
    version = root.get("schema_version", int)
    if version not in READABLE_SCHEMA_VERSIONS:
        raise root.fail(
            "schema_version", f"is {_short(version)}; this edgeact reads {list(READABLE_SCHEMA_VERSIONS)}"
        )
    chunk_size = root.positive_int("chunk_size", 1 << 20)
    action_names = root.names("action_names")
    state_names = root.names("state_names", [])
    cam_fields: dict[str, Fields] = {}
    for i, c in enumerate(root.get("cameras", list, [])):
        f = root.child(f"cameras[{i}]", c)
        cam_fields[f.get("name", str)] = f
    cameras: list[CameraInput] = []
    vectors: list[VectorInput] = []
    for i, item in enumerate(root.get("inputs", list)):
        f = root.child(f"inputs[{i}]", item)
        try:
            _parse_input(f, version, state_names, cam_fields, cameras, vectors)
        except PolicyIOError as err:
            raise f.fail("", f"is invalid: {err}") from err
    if len(cameras) != len(cam_fields):
        raise root.fail("cameras", "lists a camera that no image input uses")
    _check_output(root, chunk_size, len(action_names))
    vectors.sort(key=lambda v: vector_order(v.feature))
    try:
        return PolicyIO(tuple(cameras), tuple(vectors), action_names, chunk_size)
    except PolicyIOError as err:
        raise root.fail("inputs", f"are inconsistent: {err}") from err


def _parse_input(
    f: Fields,
    version: int,
    state_names: tuple[str, ...],
    cam_fields: dict[str, Fields],
    cameras: list[CameraInput],
    vectors: list[VectorInput],
) -> None:
    name, kind, dtype = f.get("name", str), f.get("kind", str), f.get("dtype", str)
    feature = f.get("feature", str, name)
    shape = f.get("shape", list)
    if not all(_is_int(d) and 1 <= d <= 1 << 20 for d in shape):
        raise f.fail("shape", f"must be a list of positive ints, got {_short(shape)}")
    if name != feature:
        raise f.fail("name", f"must equal the feature key {feature!r} (graph inputs are named by feature)")
    if kind == "state" and version == 1:  # schema 1: the one vector input, named by the top-level state_names
        kind, names = "vector", state_names
    elif kind == "vector":
        names = f.names("names")
    elif kind != "image":
        raise f.fail("kind", f"must be one of {INPUT_KINDS}, got {_short(kind)}")
    if kind == "vector":
        if dtype != "float32" or len(shape) != 2 or shape[0] != 1:
            raise f.fail("shape", f"of a vector input must be float32 [1, D], got {dtype} {shape}")
        if shape[1] != len(names):
            raise f.fail("shape", f"has D={shape[1]} but {len(names)} element names")
        if any(v.feature == feature for v in vectors):
            raise f.fail("feature", f"names {feature!r} a second time")
        vectors.append(VectorInput(feature, tuple(names)))
        return
    layout = f.get("layout", str, "NHWC")
    if dtype != "uint8" or len(shape) != 4 or shape[0] != 1 or layout not in LAYOUTS:
        raise f.fail(
            "shape", f"of an image input must be uint8 [1, H, W, C] NHWC or NCHW, got {dtype} {shape}"
        )
    h, w, c = (shape[1], shape[2], shape[3]) if layout == "NHWC" else (shape[2], shape[3], shape[1])
    cam = f.get("camera", str)
    spec = cam_fields.get(cam)
    if spec is None:
        raise f.fail("camera", f"names camera {cam!r}, which is not in 'cameras'")
    if camera_feature(cam) != feature:
        raise f.fail("feature", f"must be {camera_feature(cam)!r} for camera {cam!r}, got {feature!r}")
    if (spec.get("height", int), spec.get("width", int), spec.get("channels", int, 3)) != (h, w, c):
        raise spec.fail("height", f"/width/channels disagree with input {name!r} shape {shape}")
    if any(x.name == cam for x in cameras):
        raise f.fail("camera", f"names camera {cam!r} a second time")
    cameras.append(CameraInput(cam, h, w, c, layout))


def _check_output(root: Fields, chunk_size: int, action_dim: int) -> None:
    outputs = root.get("outputs", list)
    if len(outputs) != 1:
        raise root.fail("outputs", f"must hold exactly one output (the action chunk), got {len(outputs)}")
    f = root.child("outputs[0]", outputs[0])
    name, dtype, shape = f.get("name", str), f.get("dtype", str), f.get("shape", list)
    if name != ACTION:
        raise f.fail("name", f"must be {ACTION!r}, got {name!r}")
    if dtype != "float32" or len(shape) != 3 or shape[0] != 1 or shape[1] != chunk_size:
        raise f.fail("shape", f"must be float32 [1, chunk_size={chunk_size}, A], got {dtype} {_short(shape)}")
    if shape[2] != action_dim:
        raise f.fail("shape", f"has A={_short(shape[2])} but action_names has {action_dim} names")
