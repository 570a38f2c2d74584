"""Windowing into ACT samples: action chunks, padding at episode ends, history, the frame cache."""

from __future__ import annotations

import numpy as np
import pytest
from edgeact.train.data import ChunkDataset, DatasetError, LeRobotDataset
from edgeact.train.data.frame_cache import dataset_key, open_frame_cache
from edgeact.train.data.synthetic import make_synthetic_dataset


def test_batch_layout_and_padding(tiny_dataset):
    chunks = ChunkDataset(LeRobotDataset(tiny_dataset), chunk_size=5, progress=False)
    assert len(chunks) == 90
    b = chunks.get_batch([0, 28, 29, 30])
    assert b["observation.image"].dtype == np.uint8 and b["observation.image"].shape == (4, 3, 64, 64)
    assert b["observation.state"].dtype == np.float32 and b["observation.state"].shape == (4, 2)
    assert b["action"].dtype == np.float32 and b["action"].shape == (4, 5, 2)
    assert b["action_is_pad"].dtype == bool and b["action_is_pad"].shape == (4, 5)
    for key in ("index", "episode_index", "frame_index"):
        assert b[key].dtype == np.int64 and b[key].shape == (4,)
    # Synthetic action[:, 0] = 1000 * episode + t: the chunk is t..t+4, repeating the last action past the
    # end.
    np.testing.assert_array_equal(b["action"][0, :, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(b["action"][1, :, 0], [28, 29, 29, 29, 29])
    np.testing.assert_array_equal(b["action_is_pad"][1], [False, False, True, True, True])
    np.testing.assert_array_equal(b["action_is_pad"][2], [False, True, True, True, True])
    np.testing.assert_array_equal(b["action"][3, :, 0], [1000, 1001, 1002, 1003, 1004])
    np.testing.assert_array_equal(b["episode_index"], [0, 0, 0, 1])
    np.testing.assert_array_equal(b["frame_index"], [0, 28, 29, 0])
    one = chunks[28]
    assert one["action"].shape == (5, 2)
    np.testing.assert_array_equal(one["action"], b["action"][1])


def test_cache_matches_decoding(tiny_dataset):
    ds = LeRobotDataset(tiny_dataset)
    cached = ChunkDataset(ds, 3, progress=False).get_batch(np.arange(90))
    decoded = ChunkDataset(ds, 3, frame_cache=False).get_batch(np.arange(90))
    np.testing.assert_array_equal(cached["observation.image"], decoded["observation.image"])
    expected = ds.read_frames("observation.image", [31]).transpose(0, 3, 1, 2)[0]
    np.testing.assert_array_equal(cached["observation.image"][31], expected)


def test_episode_subset_and_history(tiny_dataset):
    ds = LeRobotDataset(tiny_dataset)
    chunks = ChunkDataset(
        ds, 4, episodes=[2], delta_timestamps={"observation.state": [-0.2, -0.1, 0.0]}, progress=False
    )
    assert len(chunks) == 30
    b = chunks.get_batch([0, 1, 5])
    assert b["observation.state"].shape == (3, 3, 2)
    np.testing.assert_array_equal(
        b["observation.state_is_pad"], [[True, True, False], [True, False, False], [False] * 3]
    )
    state = ds.column("observation.state")
    np.testing.assert_array_equal(b["observation.state"][2], state[[63, 64, 65]])
    np.testing.assert_array_equal(
        b["observation.state"][0], state[[60, 60, 60]]
    )  # padded with the first frame
    np.testing.assert_array_equal(b["episode_index"], [2, 2, 2])


def test_bad_arguments(tiny_dataset):
    ds = LeRobotDataset(tiny_dataset)
    with pytest.raises(DatasetError, match="episodes"):
        ChunkDataset(ds, 4, episodes=[7], frame_cache=False)
    with pytest.raises(DatasetError, match="whole frames"):
        ChunkDataset(ds, 4, delta_timestamps={"observation.state": [-0.05]}, frame_cache=False)
    with pytest.raises(ValueError, match="chunk_size"):
        ChunkDataset(ds, 0, frame_cache=False)
    with pytest.raises(IndexError):
        ChunkDataset(ds, 4, frame_cache=False).get_batch([90])


def test_cache_key_changes_with_the_files(tmp_path):
    root = make_synthetic_dataset(tmp_path / "ds", episodes=1, length=6, image_hw=(16, 16))
    ds = LeRobotDataset(root)
    key = dataset_key(root)
    first = open_frame_cache(ds, cache_dir=tmp_path / "cache", progress=False)
    assert (tmp_path / "cache" / key / "meta.json").is_file()
    assert first["observation.image"].shape == (6, 16, 16, 3)
    again = open_frame_cache(ds, cache_dir=tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(first["observation.image"], again["observation.image"])
    # A changed dataset file gives a new key, hence a rebuild.
    info = root / "meta" / "info.json"
    info.write_text(info.read_text() + " ")
    assert dataset_key(root) != key
    open_frame_cache(LeRobotDataset(root), cache_dir=tmp_path / "cache", progress=False)
    assert len([p for p in (tmp_path / "cache").iterdir()]) == 2
