"""The checkpoint's `dataset` section: an absolute root and the repo id, readable from any directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgeact.train.data import LeRobotDataset
from edgeact.train.features import dataset_section, select_features
from edgeact.train.train_config import load_train_config


def _section(dataset: str, root: Path) -> dict:
    cfg = load_train_config(overrides={"dataset": dataset})
    meta = LeRobotDataset(root).meta
    features, stats = select_features(meta, cfg, root)
    return dataset_section(cfg, root, meta, features, stats)


def test_relative_root_is_stored_absolute(tiny_dataset, monkeypatch):
    monkeypatch.chdir(tiny_dataset.parent)
    section = _section(tiny_dataset.name, Path(tiny_dataset.name))
    assert Path(section["root"]).is_absolute() and Path(section["root"]) == tiny_dataset.resolve()
    assert section["id"] == tiny_dataset.name and section["repo_id"] is None


def test_repo_id_from_an_alias_or_the_lerobot_home(tiny_dataset, tmp_path, monkeypatch):
    assert _section("pusht", tiny_dataset)["repo_id"] == "lerobot/pusht"
    home = tmp_path / "home"
    monkeypatch.setenv("HF_LEROBOT_HOME", str(home))
    shutil.copytree(tiny_dataset, home / "someone" / "copy")
    assert _section(str(home / "someone" / "copy"), home / "someone" / "copy")["repo_id"] == "someone/copy"
