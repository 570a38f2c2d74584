"""LeRobot v2.1 (one file per episode) and the deviations real datasets show, in the real layout."""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from edgeact.train.data import ChunkDataset, LeRobotDataset
from edgeact.train.data.stats import aggregate, vector_stats
from edgeact.train.data.synthetic import synthetic_episode
from edgeact.train.data.video import VideoEncoder, VideoSettings

FPS = 10
LENGTHS = [12, 9]


def _vec(values: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def write_v21(root, *, float64=False, drop=(), names_dict=False, channel_first=False, drift=0.0):
    """A v2.1 dataset as LeRobot 2.x wrote it; the keyword arguments inject real-world deviations."""
    (root / "meta").mkdir(parents=True)
    names = {"motors": ["a", "b"]} if names_dict else ["a", "b"]
    shape, img_names = ([3, 32, 32], ["channel", "height", "width"]) if channel_first else ([32, 32, 3], None)
    features = {
        "observation.images.cam": {"dtype": "video", "shape": shape, "names": img_names},
        "observation.state": {"dtype": "float32", "shape": [2], "names": names},
        "action": {"dtype": "float32", "shape": [2], "names": names},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    info = {
        "codebase_version": "v2.1",
        "robot_type": "test",
        "total_episodes": len(LENGTHS),
        "total_frames": sum(LENGTHS),
        "total_tasks": 1,
        "total_videos": len(LENGTHS),
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": f"0:{len(LENGTHS)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    episodes, ep_stats, start, originals = [], [], 0, []
    for ep, n in enumerate(LENGTHS):
        arr = synthetic_episode(ep, n, cameras=("cam",), image_hw=(32, 32))
        originals.append(arr)
        ts = np.arange(n) / FPS + drift * np.arange(n) ** 2
        cols = {
            "observation.state": _vec(arr["observation.state"].astype(np.float64 if float64 else np.float32)),
            "action": _vec(arr["action"].astype(np.float64 if float64 else np.float32)),
            "timestamp": pa.array(ts.astype(np.float32)),
            "frame_index": pa.array(np.arange(n)),
            "episode_index": pa.array(np.full(n, ep)),
            "index": pa.array(np.arange(start, start + n)),
            "task_index": pa.array(np.zeros(n, np.int64)),
        }
        for key in drop:
            cols.pop(key)
        path = root / info["data_path"].format(episode_chunk=0, episode_index=ep)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), path)
        video = root / info["video_path"].format(
            episode_chunk=0, video_key="observation.images.cam", episode_index=ep
        )
        enc = VideoEncoder(video, fps=FPS, height=32, width=32, settings=VideoSettings(codec="h264"))
        enc.write(arr["cam"])
        enc.close()
        episodes.append({"episode_index": ep, "tasks": ["pick"], "length": n})
        stats = {
            k: {s: v.tolist() for s, v in vector_stats(arr[k]).items()}
            for k in ("observation.state", "action")
        }
        ep_stats.append({"episode_index": ep, "stats": stats})
        start += n
    for name, rows in (("episodes", episodes), ("episodes_stats", ep_stats)):
        (root / "meta" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "pick"}) + "\n")
    return originals


def test_v21_reads_like_v3(tmp_path):
    originals = write_v21(tmp_path / "v21")
    ds = LeRobotDataset(tmp_path / "v21")
    assert ds.meta.version == "v2.1" and ds.meta.fps == FPS
    assert [(e.from_frame, e.to_frame) for e in ds.meta.episodes] == [(0, 12), (12, 21)]
    assert ds.meta.tasks == {0: "pick"} and ds.meta.camera_keys == ["observation.images.cam"]
    np.testing.assert_array_equal(ds.column("action")[12:], originals[1]["action"])
    want = aggregate([{k: np.asarray(v) for k, v in vector_stats(o["action"]).items()} for o in originals])
    np.testing.assert_allclose(ds.meta.stats["action"]["mean"], want["mean"], rtol=1e-12)
    frames = ds.episode_frames("observation.images.cam", 1).astype(int)
    assert np.abs(frames - originals[1]["cam"]).mean() < 8
    batch = ChunkDataset(ds, 4, progress=False).get_batch([11, 12])
    np.testing.assert_array_equal(batch["action_is_pad"], [[False, True, True, True], [False] * 4])
    assert batch["observation.images.cam"].shape == (2, 3, 32, 32)


def test_deviations_are_accepted_and_reported_once(tmp_path, caplog):
    originals = write_v21(
        tmp_path / "odd",
        float64=True,
        drop=("index", "task_index"),
        names_dict=True,
        channel_first=True,
        drift=1e-3,
    )
    with caplog.at_level(logging.WARNING, logger="edgeact.train.data"):
        ds = LeRobotDataset(tmp_path / "odd")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 5, messages  # one line per kind, not one per row or file
    joined = "\n".join(messages)
    assert "float64 column read as float32 (4 occurrences" in joined  # 2 columns x 2 files
    assert "'index' missing" in joined and "'task_index' missing" in joined
    assert "channel-first" in joined
    # drift = 1e-3 * t^2 exceeds the 1e-4 s tolerance from t = 1 on: 11 + 8 rows
    assert "timestamps drift" in joined and "(19 occurrences" in joined
    assert ds.meta.features["observation.state"]["names"] == ["a", "b"]
    assert ds.meta.features["observation.images.cam"]["shape"] == [32, 32, 3]
    assert ds.column("action").dtype == np.float32
    np.testing.assert_array_equal(ds.column("index"), np.arange(21))
    # Frames are located at frame_index / fps despite the drifting timestamps.
    frames = ds.read_frames("observation.images.cam", [12 + 8]).astype(int)
    assert np.abs(frames[0] - originals[1]["cam"][8]).mean() < 8


def test_tolerance_is_a_setting(tmp_path, caplog):
    write_v21(tmp_path / "d", drift=1e-3)
    with caplog.at_level(logging.WARNING, logger="edgeact.train.data"):
        LeRobotDataset(tmp_path / "d", timestamp_tolerance_s=1.0)
    assert not caplog.records
    with pytest.raises(ValueError, match="timestamp_tolerance_s"):
        LeRobotDataset(tmp_path / "d", timestamp_tolerance_s=-1)
