"""The diffusion-policy replay-buffer importer on small zarr files of the real layout."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from edgeact.train.data import DatasetFormatError, DatasetNotFoundError, LeRobotDataset
from edgeact.train.data.cli import main
from edgeact.train.data.synthetic import synthetic_episode


def write_replay_buffer(path, ends, *, state_width=5):
    n = int(ends[-1])
    frames = synthetic_episode(0, n, image_hw=(24, 24))["observation.image"]
    frames = frames.astype(np.float32)  # float 0..255 like pusht_cchi_v7_replay.zarr
    rng = np.random.default_rng(1)
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.create_array("data/img", data=frames)
    root.create_array("data/state", data=rng.uniform(0, 512, (n, state_width)).astype(np.float32))
    root.create_array("data/action", data=rng.uniform(0, 512, (n, 2)).astype(np.float32))
    root.create_array("meta/episode_ends", data=np.asarray(ends, dtype=np.int64))
    return root


def test_import_small_replay_buffer(tmp_path, capsys):
    src = write_replay_buffer(tmp_path / "buf.zarr", [5, 12, 20])
    assert main(["import", str(tmp_path / "buf.zarr"), str(tmp_path / "out"), "--quiet"]) == 0
    ds = LeRobotDataset(tmp_path / "out")
    assert [(e.from_frame, e.to_frame) for e in ds.meta.episodes] == [(0, 5), (5, 12), (12, 20)]
    np.testing.assert_array_equal(ds.column("observation.state"), np.asarray(src["data/state"])[:, :2])
    np.testing.assert_array_equal(ds.column("action"), np.asarray(src["data/action"]))
    assert ds.meta.features["observation.state"]["names"] == ["motor_0", "motor_1"]  # as lerobot/pusht
    assert ds.meta.info["edgeact_source"]["format"] == "diffusion_policy_zarr"
    frames = ds.episode_frames("observation.image", 2).astype(np.float64)
    assert np.abs(frames - np.asarray(src["data/img"])[12:20]).mean() < 4


def test_bad_replay_buffers(tmp_path):
    from edgeact.train.data import import_diffusion_policy_zarr

    with pytest.raises(DatasetNotFoundError):
        import_diffusion_policy_zarr(tmp_path / "nope.zarr", tmp_path / "out")
    write_replay_buffer(tmp_path / "bad.zarr", [5, 4, 20])
    with pytest.raises(DatasetFormatError, match=r"bad.zarr: meta/episode_ends must increase"):
        import_diffusion_policy_zarr(tmp_path / "bad.zarr", tmp_path / "out", progress=False)
    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w", zarr_format=2)
    with pytest.raises(DatasetFormatError, match=r"empty.zarr: not a diffusion-policy replay buffer"):
        import_diffusion_policy_zarr(tmp_path / "empty.zarr", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
