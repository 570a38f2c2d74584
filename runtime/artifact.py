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
import mmap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeact.runtime.artifact_commit import finish_interrupted_export
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
    """Read `policy.json` (or the sidecar of a model file) and validate it.

    A lone `.onnx` (no sidecar file beside it) is read from its embedded copy: that copy has
    `model_sha256: null` (a file cannot hold its own hash), so the model's graph is checked against the
    embedded `graph_sha256` instead, and the returned `model_sha256` is the hash of the file just checked."""
    path = Path(path)
    if path.suffix != ".json" and not sidecar_path(path).is_file():
        if path.suffix == ".onnx" and path.is_file():
            return _load_embedded(path)
        raise ArtifactError(
            f"{sidecar_path(path)}: policy sidecar not found (export writes it beside the model)"
        )
    json_path = path if path.suffix == ".json" else sidecar_path(path)
    try:  # an export killed between its two renames is completed (or, read-only, read as it will be)
        json_path = finish_interrupted_export(json_path)
        text = json_path.read_bytes()
    except FileNotFoundError as err:
        raise ArtifactError(f"{json_path}: file not found") from err
    except OSError as err:
        raise ArtifactError(f"{json_path}: not readable ({err.strerror or err})") from err
    return parse_artifact(_json(text, json_path), json_path)


def _json(text: bytes | str, where: Path | str) -> Any:
    """JSON at the reading boundary: every way it can fail (json.loads recurses, so deep nesting raises
    RecursionError; huge numbers raise ValueError) becomes one ArtifactError naming the file."""
    try:
        return json.loads(text)
    except RecursionError as err:
        raise ArtifactError(f"{where}: not readable JSON (nested too deeply)") from err
    except (UnicodeDecodeError, ValueError) as err:  # JSONDecodeError, int digit limits
        raise ArtifactError(f"{where}: not readable JSON ({_first_line(err)})") from err


def _first_line(err: BaseException) -> str:
    text = (str(err).splitlines() or [""])[0]
    return text if len(text) <= 120 else text[:117] + "..."


def _load_embedded(path: Path) -> PolicyArtifact:
    """The artifact of a lone ONNX file, from its `metadata_props`, with the graph checked (see above)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            (start, end), props = onnx_graph_and_metadata(mm)
            if METADATA_KEY not in props:
                raise ArtifactError(
                    f"{path}: no sidecar file and no '{METADATA_KEY}' metadata in the model "
                    f"(copy {sidecar_path(path).name} beside it)"
                )
            with memoryview(mm)[start:end] as graph:  # hashed in place, released before the unmap
                graph_hash = hashlib.sha256(graph).hexdigest()
            file_hash = hashlib.sha256(mm).hexdigest()
    except (OSError, ValueError) as err:  # ValueError: mmap of an empty file
        raise ArtifactError(f"{path}: cannot read the model file ({err})") from err
    except ArtifactError as err:
        raise ArtifactError(f"{path}: {err}") from err
    data = _json(props[METADATA_KEY], f"{path} metadata '{METADATA_KEY}'")
    art = parse_artifact(data, path, embedded=True)
    expected = art.raw.get("graph_sha256")
    if art.raw.get("model_sha256") is None or expected is not None:
        if not isinstance(expected, str):
            raise ArtifactError(
                f"{path}: metadata field 'graph_sha256' is missing; nothing to check the model against "
                f"(copy {sidecar_path(path).name} beside it or export again)"
            )
        if graph_hash != expected:
            raise ArtifactError(
                f"{path}: the graph differs from metadata field 'graph_sha256' (corrupt or modified; "
                f"export again)"
            )
    if art.raw.get("model_sha256") is None:  # the graph is verified: this very file is the model
        art = replace(art, model_file=path.name, model_sha256=file_hash)
    return art


def onnx_graph_and_metadata(buf: Any) -> tuple[tuple[int, int], dict[str, str]]:
    """Where the serialized `graph` (field 7) lies in an ONNX ModelProto (start, end), and its
    `metadata_props` (field 14). `buf`: bytes or an mmap (nothing large is copied).

    A reader of the protobuf wire format (protobuf.dev/programming-guides/encoding), so a robot needs no
    onnx package; the graph bytes are those `graph_sha256` hashes (onnx's GraphProto has no map fields,
    so its serialization is the same inside the model as alone). Raises ArtifactError on malformed bytes."""
    graph, props = None, {}
    for num, start, end in _fields(buf, 0, len(buf), "ModelProto"):
        if num == 7 and end >= 0:
            graph = (start, end)
        elif num == 14 and end >= 0:
            entry = {n: bytes(buf[a:b]) for n, a, b in _fields(buf, start, end, "metadata_props") if b >= 0}
            try:
                props[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
            except UnicodeDecodeError as err:
                raise ArtifactError("not an ONNX model (metadata_props is not UTF-8)") from err
    if graph is None:
        raise ArtifactError("not an ONNX model (no graph)")
    return graph, props


def _fields(buf: Any, pos: int, end: int, what: str) -> Any:
    """(field number, start, end) of each length-delimited field of one protobuf message in buf[pos:end];
    end is -1 for the other wire types."""
    while pos < end:
        key, pos = _varint(buf, pos, end, what)
        num, wire = key >> 3, key & 7
        start, stop = pos, -1
        if wire == 0:
            _, pos = _varint(buf, pos, end, what)
        elif wire == 2:
            size, start = _varint(buf, pos, end, what)
            pos = stop = start + size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ArtifactError(f"not an ONNX model ({what}: wire type {wire} at byte {pos})")
        if pos > end or num == 0:
            raise ArtifactError(f"not an ONNX model ({what}: truncated)")
        yield num, start, stop


def _varint(buf: Any, pos: int, end: int, what: str) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 64:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ArtifactError(f"not an ONNX model ({what}: bad varint)")


def parse_artifact(data: Any, where: Path, *, embedded: bool = False) -> PolicyArtifact:
    """Validate a sidecar object (already parsed) read from `where`. `embedded`: the copy inside an ONNX
    file, whose `model_sha256` may be null (`load_artifact` then checks `graph_sha256`)."""
    try:
        return _parse_artifact(data, where, embedded)
    except RecursionError as err:  # a hand-made object nested beyond the interpreter's limit
        raise ArtifactError(f"{where}: the sidecar is nested too deeply") from err


def _parse_artifact(data: Any, where: Path, embedded: bool) -> PolicyArtifact:
    root = Fields(data, where, error=ArtifactError)
    io = parse_io(root, where, error=ArtifactError)
    fmt = root.get("format", str)
    if fmt not in FORMATS:
        raise root.fail("format", f"must be one of {sorted(FORMATS)}, got {fmt!r}")
    model_file = root.get("model_file", str)
    if not model_file.endswith(FORMATS[fmt]) or "/" in model_file:
        raise root.fail("model_file", f"must be a file name ending in {FORMATS[fmt]}, got {model_file!r}")
    sha = root.get("model_sha256", (str, type(None)) if embedded else str)
    if sha is None:
        sha = ""  # the embedded copy: load_artifact fills in the hash of the checked file
    elif len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
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
        raise ArtifactError(f"{where}: field 'execution' is invalid: {_first_line(err)}") from err
    return PolicyArtifact(
        path=where, format=fmt, model_file=model_file, model_sha256=sha, io=io, fps=fps,
        execution=execution, image_resize=resize, raw=data,
    )  # fmt: skip
