"""Hostile sidecars: whatever is in policy.json, the readers raise only the project's error types (issue 12).

`parse_io` raises `PolicyIOError` (or the error type it is given), `parse_artifact` and `load_artifact` raise
`ArtifactError`: never OverflowError (a 401-digit fps), ValueError from int conversion (5001 digits),
RecursionError (100k nested arrays) or TypeError (chunk_size 1e30).
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from edgeact.runtime.artifact import ArtifactError, load_artifact, parse_artifact
from edgeact.runtime.policy_io import STATE, CameraInput, PolicyIO, PolicyIOError, VectorInput, parse_io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HUGE = (10**400, 10**5000, -(10**400), 1e30, -1e30, 2**63, 2**31, -1, 0, 1e308, float("inf"), float("nan"))
DEEP = 100_000


def _valid() -> dict[str, Any]:
    io = PolicyIO((CameraInput("top", 8, 6),), (VectorInput(STATE, ("x", "y")),), ("a", "b"), 4)
    return {
        "schema_version": 2, "format": "onnx", "model_file": "policy.onnx", "model_sha256": "0" * 64,
        "graph_sha256": "1" * 64, **io.to_json(), "fps": 10, "image_resize": "bilinear_half_pixel",
        "normalization": {"inside_graph": True, "stats": {}},
        "execution": {"mode": "ensemble", "temporal_ensemble_coeff": 0.01, "n_action_steps": 4},
    }  # fmt: skip


def _deep(n: int) -> Any:
    value: Any = 1
    for _ in range(n):
        value = [value]
    return value


def _name(value: Any) -> str:
    if isinstance(value, int) and abs(value) > 10**30:
        return f"int{value.bit_length()}bits"
    return type(value).__name__ if isinstance(value, list | str) else repr(value)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (a tuple of keys and indices) into `doc`."""
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _huge(i: int) -> Any:  # by index: hypothesis cannot repr a 5001-digit int inside a strategy
    return HUGE[i]


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.integers(0, len(HUGE) - 1).map(_huge),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_mutation = st.tuples(st.sampled_from(("drop", "set")), st.integers(0, 10**6), _json_values)


def _mutate(doc: dict[str, Any], mutations: list[tuple[str, int, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for op, pick, value in mutations:
        paths = _paths(doc)
        if not paths:
            break
        *parents, last = paths[pick % len(paths)]
        holder = doc
        for key in parents:
            holder = holder[key]
        if op == "drop":
            del holder[last]
        else:
            holder[last] = value
    return doc


def _check_all_readers(doc: Any, tmp: Path) -> None:
    with contextlib.suppress(PolicyIOError):
        parse_io(doc, "policy.json")
    with contextlib.suppress(ArtifactError):
        parse_artifact(doc, tmp / "policy.json")
    try:
        text = json.dumps(doc, allow_nan=True)
    except (ValueError, RecursionError):  # a 5001-digit int has no decimal text here: write it by hand
        return
    (tmp / "policy.json").write_text(text)
    with contextlib.suppress(ArtifactError):
        load_artifact(tmp / "policy.json")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_sidecars_raise_only_project_errors(tmp_path: Path, mutations) -> None:
    _check_all_readers(_mutate(_valid(), mutations), tmp_path)


@pytest.mark.parametrize("field", ["fps", "chunk_size", "schema_version", "execution", "inputs", "outputs"])
@pytest.mark.parametrize("value", [*HUGE, _deep(DEEP), "x" * 100_000], ids=lambda v: _name(v))
def test_hostile_values(tmp_path: Path, field: str, value: Any) -> None:
    """The reported cases, in every top-level field they can hide in: accepted or refused by name."""
    doc = _valid()
    doc[field] = value
    with contextlib.suppress(PolicyIOError):
        parse_io(doc, "policy.json")
    try:
        parse_artifact(doc, tmp_path / "policy.json")
    except ArtifactError as err:
        assert str(err).startswith(f"{tmp_path / 'policy.json'}: ") and "\n" not in str(err)
    else:
        assert field == "fps" and 0 < value < float("inf")  # only a finite positive fps can be right


@pytest.mark.parametrize(
    "text",
    [
        '{"fps": 1' + "0" * 400 + "}",  # a 401-digit number
        '{"fps": 1' + "0" * 5000 + "}",  # over Python's int digit limit: ValueError in json.loads
        '{"chunk_size": 1e30}',
        '{"fps": 1e999}',  # json.loads reads it as inf
        "[" * DEEP + "]" * DEEP,  # RecursionError in json.loads
        '{"inputs": ' + "[" * DEEP + "]" * DEEP + "}",
        "\xff\xfe not utf-8",
        "",
    ],
)
def test_hostile_files(tmp_path: Path, text: str) -> None:
    doc = json.loads(json.dumps(_valid()))
    path = tmp_path / "policy.json"
    base = json.dumps(doc)
    for body in (text, base[:-1] + ", " + text[1:] if text.startswith("{") else text):
        path.write_bytes(body.encode("latin-1"))
        with pytest.raises(ArtifactError, match=r"policy\.json"):
            load_artifact(path)


def test_rt_run_model_must_be_the_model_file(tmp_path: Path, capsys) -> None:
    """`rt-run --model policy.json` named "sha256 differs"; it says which file it expects."""
    from edgeact.runtime.cli import main

    side = tmp_path / "policy.json"
    side.write_text(json.dumps(_valid()))
    rc = main(["--robot", "pusht-sim", "--model", str(side), "--episodes", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "--model takes the model file (policy.onnx or .engine), not its sidecar" in err
    assert "sha256" not in err


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _model_bytes(metadata: str) -> bytes:
    """A ModelProto on the wire: an empty graph (field 7) and metadata_props (field 14) edgeact.policy."""
    key, value = b"edgeact.policy", metadata.encode()
    entry = b"\x0a" + _varint(len(key)) + key + b"\x12" + _varint(len(value)) + value
    return b"\x08\x09" + b"\x3a\x00" + b"\x72" + _varint(len(entry)) + entry


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=64) | st.builds(_model_bytes, st.text(max_size=40)))
def test_lone_onnx_with_any_bytes_raises_only_artifact_error(tmp_path: Path, data: bytes) -> None:
    """A lone .onnx is read by a small protobuf reader: truncated or foreign bytes are named, no crash."""
    path = tmp_path / "policy.onnx"
    path.write_bytes(data)
    with pytest.raises(ArtifactError, match=r"policy\.onnx"):
        load_artifact(path)


@pytest.mark.parametrize(
    "metadata", ["[" * DEEP + "]" * DEEP, '{"fps": 1' + "0" * 5000 + "}", json.dumps({**_valid(), "fps": -1})]
)
def test_lone_onnx_with_hostile_metadata(tmp_path: Path, metadata: str) -> None:
    path = tmp_path / "policy.onnx"
    path.write_bytes(_model_bytes(metadata))
    with pytest.raises(ArtifactError, match=r"policy\.onnx"):
        load_artifact(path)
