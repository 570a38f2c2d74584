"""The policy metadata: reading a checkpoint config, the sidecar round trip, schema checks."""

from __future__ import annotations

import copy

import pytest
from edgeact.export.artifact import (
    SCHEMA_VERSION,
    build_sidecar,
    check_sidecar,
    spec_from_checkpoint_config,
    spec_from_sidecar,
)
from edgeact.export.errors import CheckpointError

STATS = {
    "observation.image": {"mean": [[[0.5]], [[0.4]], [[0.3]]], "std": [[[0.2]], [[0.2]], [[0.2]]]},
    "observation.state": {"mean": [1.0, 2.0], "std": [3.0, 4.0], "min": [0.0, 0.0], "max": [9.0, 9.0]},
    "action": {"mean": [5.0, 6.0], "std": [7.0, 8.0]},
}
CONFIG = {
    "schema_version": 1,
    "policy": {
        "chunk_size": 100,
        "execution_mode": "chunk",
        "temporal_ensemble_coeff": 0.01,
        "n_action_steps": 20,
    },
    "dataset": {
        "id": "lerobot/pusht",
        "fps": 10,
        "features": {
            "observation.image": {
                "dtype": "video",
                "shape": [96, 80, 3],
                "names": ["height", "width", "channel"],
            },
            "observation.state": {"dtype": "float32", "shape": [2], "names": {"motors": ["x", "y"]}},
            "action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
        },
        "stats": STATS,
    },
    "train": {"steps": 10},
}


def test_spec_from_checkpoint_config() -> None:
    spec = spec_from_checkpoint_config(CONFIG)
    (cam,) = spec.cameras
    assert (cam.name, cam.feature, cam.height, cam.width, cam.channels) == (
        "image",
        "observation.image",
        96,
        80,
        3,
    )
    assert spec.input_names == ["observation.image", "observation.state"]
    assert spec.state_names == ("x", "y") and spec.action_names == ("x", "y")
    assert spec.execution == {"mode": "chunk", "temporal_ensemble_coeff": 0.01, "n_action_steps": 20}
    assert spec.action_mean_std() == ([5.0, 6.0], [7.0, 8.0])


def test_channel_first_image_shape() -> None:
    doc = copy.deepcopy(CONFIG)
    doc["dataset"]["features"]["observation.image"] = {"dtype": "image", "shape": [3, 48, 64], "names": None}
    (cam,) = spec_from_checkpoint_config(doc).cameras
    assert (cam.height, cam.width, cam.channels) == (48, 64, 3)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["dataset"].pop("stats"), "dataset.stats is missing"),
        (lambda d: d["dataset"]["stats"]["observation.state"].pop("std"), "'observation.state'"),
        (lambda d: d["dataset"]["features"].pop("observation.state"), "no 'observation.state'"),
        (lambda d: d.pop("policy"), "missing section"),
        (lambda d: d["dataset"]["features"]["observation.image"].update(shape=[96, 96]), "3 dims"),
    ],
)
def test_bad_checkpoint_config(edit, message) -> None:
    doc = copy.deepcopy(CONFIG)
    edit(doc)
    with pytest.raises(CheckpointError, match=message):
        spec_from_checkpoint_config(doc, where="ckpt/config.json")


def test_sidecar_round_trip_and_schema_check() -> None:
    spec = spec_from_checkpoint_config(CONFIG)
    doc = build_sidecar(
        spec, fmt="onnx", model_file="policy.onnx", model_sha256="ab", graph_sha256="cd", parity={}
    )
    assert doc["schema_version"] == SCHEMA_VERSION and doc["engine"] is None
    assert doc["inputs"][0] == {
        "name": "observation.image", "feature": "observation.image", "kind": "image", "camera": "image",
        "dtype": "uint8", "shape": [1, 96, 80, 3], "layout": "NHWC",
    }  # fmt: skip
    back = spec_from_sidecar(doc, where="policy.json")
    assert back.cameras == spec.cameras and back.state_dim == 2 and back.chunk_size == 100
    assert back.stats == STATS and back.execution == spec.execution
    with pytest.raises(CheckpointError, match="schema_version 2"):
        check_sidecar({**doc, "schema_version": 2}, "policy.json")
    with pytest.raises(CheckpointError, match="graph_sha256"):
        check_sidecar({k: v for k, v in doc.items() if k != "graph_sha256"}, "policy.json")
