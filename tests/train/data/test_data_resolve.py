"""resolve_dataset: explicit paths, HF_LEROBOT_HOME, the offline mirror, and the error that says what to
do."""

from __future__ import annotations

import shutil

import pytest
from edgeact.train.data import DatasetNotFoundError, resolve_dataset


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EDGEACT_DATASET_MIRROR", raising=False)


def test_explicit_path(tiny_dataset, tmp_path):
    assert resolve_dataset(tiny_dataset) == tiny_dataset
    assert resolve_dataset(str(tiny_dataset)) == tiny_dataset
    with pytest.raises(DatasetNotFoundError, match="not a LeRobot dataset"):
        resolve_dataset(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="no such dataset folder"):
        resolve_dataset(tmp_path / "nope")


def test_lerobot_home_then_mirror(tiny_dataset, tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="EDGEACT_DATASET_MIRROR"):
        resolve_dataset("pusht")
    mirror = tmp_path / "mirror"
    shutil.copytree(tiny_dataset, mirror / "lerobot" / "toy")
    monkeypatch.setenv("EDGEACT_DATASET_MIRROR", str(mirror))
    assert resolve_dataset("lerobot/toy") == mirror / "lerobot" / "toy"
    shutil.copytree(tiny_dataset, tmp_path / "home" / "lerobot" / "toy")
    assert resolve_dataset("lerobot/toy") == tmp_path / "home" / "lerobot" / "toy"  # the cache comes first


def test_pusht_mirror_imports_once(tmp_path, monkeypatch, shared_datasets):
    # A mirror holding only a few episodes of the zarr keeps this test fast: link the real arrays' folder.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "pusht_cchi_v7_replay.zarr").symlink_to(shared_datasets / "pusht_cchi_v7_replay.zarr")
    calls = []
    import edgeact.train.data.zarr_import as zi

    real = zi.import_diffusion_policy_zarr

    def few(src, out, **kw):
        calls.append(out)
        return real(src, out, max_episodes=2, progress=False, **kw)

    monkeypatch.setattr(zi, "import_diffusion_policy_zarr", few)
    root = resolve_dataset("pusht", mirror=mirror)
    assert root == tmp_path / "home" / "lerobot" / "pusht"
    assert (root / "meta" / "info.json").is_file()
    assert resolve_dataset("pusht", mirror=mirror) == root
    assert len(calls) == 1


def test_hub_download_when_online(tiny_dataset, tmp_path, monkeypatch):
    # huggingface_hub is optional and the machine is offline: a stand-in module records the call and copies
    # a local dataset where the real snapshot_download would put the files.
    import sys
    import types

    calls = []

    def snapshot_download(repo_id, *, repo_type, local_dir):
        calls.append((repo_id, repo_type))
        shutil.copytree(tiny_dataset, local_dir)
        return str(local_dir)

    monkeypatch.setitem(
        sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download)
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    root = resolve_dataset("someone/toy")
    assert root == tmp_path / "home" / "someone" / "toy" and calls == [("someone/toy", "dataset")]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match="someone/other"):
        resolve_dataset("someone/other")
    assert len(calls) == 1
