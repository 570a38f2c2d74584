"""Real community datasets and bad input: template variants, old formats, incomplete info.json (issue 12)."""

from __future__ import annotations

import json
import logging
import pathlib
import shutil

import pytest
from edgeact.train.data import DatasetFormatError, DatasetNotFoundError, LeRobotDataset, resolve_dataset
from edgeact.train.data.cli import main as dataset_main
from test_data_v21 import write_v21


@pytest.fixture
def copy(tiny_dataset, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(tiny_dataset, dst)
    return dst


def _edit_info(root, edit):
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    edit(info)
    path.write_text(json.dumps(info))


def test_v21_templates_with_chunk_index(tmp_path, caplog):
    root = tmp_path / "v21"
    write_v21(root)

    def use_chunk_index(info):
        info["data_path"] = info["data_path"].replace("episode_chunk", "chunk_index")
        info["video_path"] = info["video_path"].replace("episode_chunk", "chunk_index")

    _edit_info(root, use_chunk_index)
    with caplog.at_level(logging.WARNING, logger="edgeact.train.data"):
        ds = LeRobotDataset(root)
    assert ds.meta.total_frames == 21 and ds.read_frames("observation.images.cam", [20]).shape == (
        1,
        32,
        32,
        3,
    )
    assert "{chunk_index}" in caplog.text  # the accepted deviation is logged


def test_unknown_template_variable_names_the_field(tmp_path):
    root = tmp_path / "v21"
    write_v21(root)
    _edit_info(root, lambda info: info.update(data_path="data/{shard}/episode_{episode_index:06d}.parquet"))
    with pytest.raises(DatasetFormatError, match=r"info.json: field 'data_path' .* uses \{shard\}"):
        LeRobotDataset(root)


def test_pre_v2_dataset_says_how_to_convert(tmp_path):
    root = tmp_path / "old"
    (root / "meta_data").mkdir(parents=True)
    (root / "train").mkdir()
    (root / "meta_data" / "info.json").write_text(json.dumps({"codebase_version": "v1.6", "fps": 50}))
    (root / "train" / "data-00000-of-00001.arrow").write_bytes(b"")
    for call in (LeRobotDataset, resolve_dataset):
        with pytest.raises(DatasetNotFoundError) as info:
            call(root)
        msg = str(info.value)
        assert "LeRobot v1.6 dataset" in msg and "convert_dataset_v1_to_v2" in msg and "meta_data" in msg


def test_v3_without_path_templates_uses_lerobot_defaults(copy, caplog):
    _edit_info(copy, lambda info: (info.pop("data_path"), info.pop("video_path")))
    with caplog.at_level(logging.WARNING, logger="edgeact.train.data"):
        ds = LeRobotDataset(copy)
    assert ds.read_frames("observation.image", [0]).shape == (1, 64, 64, 3)
    assert "no 'data_path'" in caplog.text and "no 'video_path'" in caplog.text


def test_v3_without_features_names_info_json(copy):
    _edit_info(copy, lambda info: info.pop("features"))
    with pytest.raises(DatasetFormatError, match=r"meta/info.json: no 'features'"):
        LeRobotDataset(copy)


def test_declared_shape_differs_from_the_data(copy, capsys):
    _edit_info(copy, lambda info: info["features"]["action"].update(shape=[7]))
    with pytest.raises(DatasetFormatError, match=r"info.json: feature 'action' is declared with shape \[7\]"):
        LeRobotDataset(copy)
    assert dataset_main(["info", str(copy)]) == 1
    err = capsys.readouterr().err
    assert "info.json" in err and "'action'" in err and "2 values per row" in err


def test_video_info_is_logged(copy, caplog):
    def rename(info):
        info["features"]["observation.image"]["video_info"] = info["features"]["observation.image"].pop(
            "info"
        )

    _edit_info(copy, rename)
    with caplog.at_level(logging.WARNING, logger="edgeact.train.data"):
        ds = LeRobotDataset(copy)
    assert "video.codec" in ds.meta.features["observation.image"]["info"]
    assert "'video_info' read as 'info'" in caplog.text


def test_unreadable_info_json(copy, monkeypatch):
    real = pathlib.Path.read_text

    def denied(self, *a, **k):
        if self.name == "info.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "read_text", denied)
    with pytest.raises(DatasetFormatError, match=r"info.json: cannot read \(Permission denied\)"):
        LeRobotDataset(copy)
