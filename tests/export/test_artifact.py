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
        (lambda d: d["dataset"]["features"].pop("action"), "no 'action'"),
        (lambda d: d["dataset"]["features"]["observation.state"].update(shape=[2, 1]), "must be \\[D\\]"),
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
    with pytest.raises(CheckpointError, match="schema_version 99"):
        check_sidecar({**doc, "schema_version": 99}, "policy.json")
    with pytest.raises(CheckpointError, match="graph_sha256"):
        check_sidecar({k: v for k, v in doc.items() if k != "graph_sha256"}, "policy.json")


def test_keypoint_policy_has_vector_inputs_and_no_camera() -> None:
    """A checkpoint without cameras and with the environment state: two vector inputs, state first."""
    doc = copy.deepcopy(CONFIG)
    feats, stats = doc["dataset"]["features"], doc["dataset"]["stats"]
    del feats["observation.image"], stats["observation.image"]
    doc["dataset"]["camera_keys"] = []
    names = [f"k{i}" for i in range(16)]
    feats["observation.environment_state"] = {"dtype": "float32", "shape": [16], "names": names}
    stats["observation.environment_state"] = {"mean": [0.0] * 16, "std": [1.0] * 16}
    spec = spec_from_checkpoint_config(doc)
    assert spec.cameras == () and spec.input_names == ["observation.state", "observation.environment_state"]
    assert spec.vectors[1].names == tuple(names) and spec.state_names == ("x", "y")
    side = build_sidecar(
        spec, fmt="onnx", model_file="p.onnx", model_sha256=None, graph_sha256="c", parity={}
    )
    assert [i["kind"] for i in side["inputs"]] == ["vector", "vector"] and side["cameras"] == []
    assert side["inputs"][1] == {
        "name": "observation.environment_state", "feature": "observation.environment_state", "kind": "vector",
        "dtype": "float32", "shape": [1, 16], "names": names,
    }  # fmt: skip
    assert spec_from_sidecar(side, where="p.json").io == spec.io


def test_schema_1_sidecar_still_reads() -> None:
    """Schema 1 had one `kind: state` input named by the top-level `state_names`."""
    spec = spec_from_checkpoint_config(CONFIG)
    doc = build_sidecar(spec, fmt="onnx", model_file="p.onnx", model_sha256=None, graph_sha256="c", parity={})
    old = copy.deepcopy(doc)
    old["schema_version"] = 1
    old["inputs"][1] = {"name": "observation.state", "feature": "observation.state", "kind": "state",
                        "dtype": "float32", "shape": [1, 2]}  # fmt: skip
    assert spec_from_sidecar(old, where="p.json").io == spec.io
    old["schema_version"] = 2  # the `state` kind is schema 1 only
    with pytest.raises(CheckpointError, match=r"inputs\[1\]\.kind"):
        spec_from_sidecar(old, where="p.json")
