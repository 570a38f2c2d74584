"""Corrupt inputs fail with an error naming the file (and episode and column where they apply)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from edgeact.train.data import (
    ChunkDataset,
    DatasetFormatError,
    DatasetNotFoundError,
    LeRobotDataset,
    VideoDecodeError,
)

DATA = "data/chunk-000/file-000.parquet"
VIDEO = "videos/observation.image/chunk-000/file-000.mp4"


@pytest.fixture
def copy(tiny_dataset, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(tiny_dataset, dst)
    return dst


def _rewrite_data(root, edit):
    table = pq.read_table(root / DATA)
    pq.write_table(edit(table), root / DATA)


def test_missing_files(copy):
    (copy / DATA).unlink()
    with pytest.raises(DatasetNotFoundError, match=r"file-000.parquet: missing"):
        LeRobotDataset(copy)
    (copy / "meta" / "info.json").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"no meta/info.json"):
        LeRobotDataset(copy)


def test_missing_video(copy):
    (copy / VIDEO).unlink()
    ds = LeRobotDataset(copy)  # metadata and columns are fine; the frames are not
    with pytest.raises(DatasetNotFoundError, match=r"file-000.mp4"):
        ds.read_frames("observation.image", [0])


def test_truncated_parquet(copy):
    raw = (copy / DATA).read_bytes()
    (copy / DATA).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetFormatError, match=r"file-000.parquet: cannot read parquet"):
        LeRobotDataset(copy)


def test_bad_json(copy):
    (copy / "meta" / "info.json").write_text("{not json")
    with pytest.raises(DatasetFormatError, match=r"info.json: not valid JSON"):
        LeRobotDataset(copy)


def test_undecodable_video(copy):
    (copy / VIDEO).write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    ds = LeRobotDataset(copy)
    with pytest.raises(VideoDecodeError, match=r"file-000.mp4"):
        ds.read_frames("observation.image", [3])
    with pytest.raises(VideoDecodeError, match=r"file-000.mp4"):
        ChunkDataset(ds, 4, cache_dir=copy.parent / "cache", progress=False)
    assert not any((copy.parent / "cache").glob("*/meta.json"))  # no finished-looking cache left behind


def test_video_shorter_than_the_data(copy, tmp_path):
    from edgeact.train.data.video import VideoEncoder, VideoSettings, iter_frames

    frames = np.stack([img for _, img in iter_frames(copy / VIDEO)])[:75]
    enc = VideoEncoder(copy / VIDEO, fps=10, height=64, width=64, settings=VideoSettings(codec="h264"))
    enc.write(frames)
    enc.close()
    ds = LeRobotDataset(copy)
    with pytest.raises(VideoDecodeError, match=r"episode 2, column 'observation.image'"):
        ChunkDataset(ds, 4, cache_dir=tmp_path / "cache", progress=False)


def test_lengths_that_disagree(copy):
    _rewrite_data(copy, lambda t: t.slice(0, 89))
    with pytest.raises(DatasetFormatError, match=r"89 rows but the episode metadata says 90"):
        LeRobotDataset(copy)


def test_episode_index_that_disagrees(copy):
    def edit(t):
        ep = t.column("episode_index").to_numpy().copy()
        ep[35] = 0
        return t.set_column(t.schema.get_field_index("episode_index"), "episode_index", pa.array(ep))

    _rewrite_data(copy, edit)
    with pytest.raises(
        DatasetFormatError, match=r"file-000.parquet: episode 1, column 'episode_index': row 35"
    ):
        LeRobotDataset(copy)


def test_nan_in_actions(copy):
    def edit(t):
        a = np.stack(t.column("action").to_pylist()).astype(np.float32)
        a[65, 1] = np.nan
        col = pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), 2)
        return t.set_column(t.schema.get_field_index("action"), "action", col)

    _rewrite_data(copy, edit)
    with pytest.raises(
        DatasetFormatError, match=r"episode 2, column 'action': NaN or inf at row 65 \(frame 5"
    ):
        LeRobotDataset(copy)


def test_bad_fps_and_unknown_version(copy):
    info = json.loads((copy / "meta" / "info.json").read_text())
    (copy / "meta" / "info.json").write_text(json.dumps({**info, "fps": 0}))
    with pytest.raises(DatasetFormatError, match=r"fps must be a positive number"):
        LeRobotDataset(copy)
    (copy / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(DatasetFormatError, match=r"v1.6"):
        LeRobotDataset(copy)
