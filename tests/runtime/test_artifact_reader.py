"""policy.json reading and validation: every error names the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from core_graphs import build_graph_policy
from edgeact.runtime.artifact import ArtifactError, load_artifact, sha256_file


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cams = (("top", 12, 16, "NHWC"), ("wrist", 10, 8, "NCHW"))
    return build_graph_policy(tmp_path_factory.mktemp("art"), cameras=cams, execution={"mode": "chunk"})


def test_reads_sidecar_beside_the_model(model_path: Path) -> None:
    art = load_artifact(model_path)
    assert art.path == model_path.with_suffix(".json") and art.model_path() == model_path
    assert [(c.name, c.input_name, c.height, c.width, c.layout) for c in art.cameras] == [
        ("top", "observation.images.top", 12, 16, "NHWC"),
        ("wrist", "observation.images.wrist", 10, 8, "NCHW"),
    ]
    assert (art.state_input, art.state_dim, art.output_name) == ("observation.state", 3, "action")
    assert (art.chunk_size, art.action_dim, art.fps) == (6, 2, 50.0)
    assert art.execution.mode == "chunk" and art.execution.n_action_steps == 6
    assert art.model_sha256 == sha256_file(model_path)
    assert load_artifact(model_path.with_suffix(".json")).raw == art.raw


def test_embedded_metadata_when_the_sidecar_is_missing(tmp_path: Path) -> None:
    import onnx

    path = build_graph_policy(tmp_path)
    side = path.with_suffix(".json").read_text()
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"edgeact.policy": side})
    path.write_bytes(model.SerializeToString())
    path.with_suffix(".json").unlink()
    art = load_artifact(path)
    assert art.path == path and art.chunk_size == 6


def _edit(model_path: Path, tmp_path: Path, edit) -> Path:
    side = json.loads(model_path.with_suffix(".json").read_text())
    edit(side)
    out = tmp_path / "policy.json"
    out.write_text(json.dumps(side))
    return out


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.update(schema_version=99), "schema_version"),
        (lambda d: d.update(format="tflite"), "format"),
        (lambda d: d.pop("model_sha256"), "model_sha256"),
        (lambda d: d.update(model_file="../policy.onnx"), "model_file"),
        (lambda d: d.update(chunk_size=0), "chunk_size"),
        (lambda d: d.update(fps=-1), "fps"),
        (lambda d: d.update(image_resize="nearest"), "image_resize"),
        (lambda d: d["inputs"][0].update(dtype="float32"), r"inputs\[0\]\.shape"),
        (lambda d: d["inputs"][0].update(camera="side"), r"inputs\[0\]\.camera"),
        (lambda d: d["inputs"][1].update(kind="depth"), r"inputs\[1\]\.kind"),
        (lambda d: d["cameras"][0].update(height=13), r"cameras\[0\]\.height"),
        (lambda d: d["inputs"][2].update(shape=[1, 4]), r"inputs\[2\]\.shape"),
        (lambda d: d["outputs"][0].update(shape=[1, 7, 2]), r"outputs\[0\]\.shape"),
        (lambda d: d.update(action_names=["a"]), r"outputs\[0\]\.shape"),
        (lambda d: d.update(execution={"mode": "later"}), "execution"),
        (lambda d: d.update(state_names="s0"), "state_names"),
        (lambda d: d["normalization"].update(inside_graph=False), r"normalization\.inside_graph"),
    ],
)
def test_errors_name_file_and_field(model_path: Path, tmp_path: Path, edit, field: str) -> None:
    path = _edit(model_path, tmp_path, edit)
    with pytest.raises(ArtifactError, match=rf"{path}: field '{field}"):
        load_artifact(path)


def test_unreadable_or_missing(tmp_path: Path) -> None:
    bad = tmp_path / "policy.json"
    bad.write_text("{not json")
    with pytest.raises(ArtifactError, match="not readable JSON"):
        load_artifact(bad)
    with pytest.raises(ArtifactError, match="sidecar not found"):
        load_artifact(tmp_path / "other.engine")
