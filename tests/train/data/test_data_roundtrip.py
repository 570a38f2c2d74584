"""Writer -> reader round trip on synthetic LeRobot v3.0 datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgeact.train.data import (
    DatasetExistsError,
    DatasetFormatError,
    LeRobotDataset,
    LeRobotWriter,
    VideoSettings,
)
from edgeact.train.data.synthetic import make_synthetic_dataset, synthetic_episode


def test_columns_and_meta_round_trip(tiny_dataset):
    ds = LeRobotDataset(tiny_dataset)
    meta = ds.meta
    assert meta.version == "v3.0" and meta.fps == 10
    assert meta.camera_keys == ["observation.image"]
    assert [(e.index, e.length, e.from_frame, e.to_frame) for e in meta.episodes] == [
        (0, 30, 0, 30),
        (1, 30, 30, 60),
        (2, 30, 60, 90),
    ]
    assert meta.total_frames == 90 and len(ds) == 90
    assert meta.features["observation.state"]["names"] == ["state_0", "state_1"]
    assert meta.features["observation.image"]["shape"] == [64, 64, 3]
    assert meta.tasks == {0: "synthetic task"}
    for e in meta.episodes:
        want = synthetic_episode(e.index, 30)
        np.testing.assert_array_equal(ds.column("action")[e.from_frame : e.to_frame], want["action"])
        np.testing.assert_array_equal(
            ds.column("observation.state")[e.from_frame : e.to_frame], want["observation.state"]
        )
    np.testing.assert_array_equal(ds.column("index"), np.arange(90))
    np.testing.assert_allclose(ds.column("timestamp")[:30], np.arange(30) / 10, atol=1e-6)


def test_stats_match_numpy(tiny_dataset):
    ds = LeRobotDataset(tiny_dataset)
    action = ds.column("action").astype(np.float64)
    s = ds.meta.stats["action"]
    np.testing.assert_allclose(s["mean"], action.mean(0), rtol=1e-9)
    np.testing.assert_allclose(s["std"], action.std(0), rtol=1e-9)
    np.testing.assert_allclose(s["min"], action.min(0))
    assert s["count"] == [90]
    frames = np.concatenate([synthetic_episode(e, 30)["observation.image"] for e in range(3)]) / 255.0
    img = ds.meta.stats["observation.image"]
    np.testing.assert_allclose(img["mean"], frames.reshape(-1, 3).mean(0), rtol=1e-9)
    np.testing.assert_allclose(img["std"], frames.reshape(-1, 3).std(0), rtol=1e-9)
    raw = json.loads((tiny_dataset / "meta" / "stats.json").read_text())
    assert np.asarray(raw["observation.image"]["mean"]).shape == (3, 1, 1)  # LeRobot's on-disk nesting


def test_decoded_frames_close_to_originals_and_in_order(tiny_dataset):
    ds = LeRobotDataset(tiny_dataset)
    for ep in range(3):
        want = synthetic_episode(ep, 30)["observation.image"].astype(np.int16)
        got = ds.episode_frames("observation.image", ep).astype(np.int16)
        err = np.abs(got - want).mean(axis=(1, 2, 3))  # (T,)
        # Lossy yuv420p video: a few levels on average; the neighbouring frame is much further away.
        assert err.max() < 4.0
        # Each decoded frame is its own original, not a neighbour's (no off-by-one in timestamps).
        prev = np.abs(got[1:] - want[:-1]).mean(axis=(1, 2, 3))
        nxt = np.abs(got[:-1] - want[1:]).mean(axis=(1, 2, 3))
        assert (err[1:] < prev).all() and (err[:-1] < nxt).all()
    rows = np.array([45, 3, 89, 30])
    one = ds.read_frames("observation.image", rows)
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(one[i], ds.read_frames("observation.image", [r])[0])


def test_two_cameras_and_state_only(tmp_path):
    two = make_synthetic_dataset(
        tmp_path / "two",
        episodes=2,
        length=[5, 7],
        cameras=("observation.images.top", "observation.images.wrist"),
    )
    ds = LeRobotDataset(two)
    assert ds.meta.camera_keys == ["observation.images.top", "observation.images.wrist"]
    assert [e.length for e in ds.meta.episodes] == [5, 7]
    bare = LeRobotDataset(make_synthetic_dataset(tmp_path / "bare", episodes=1, length=4, cameras=()))
    assert bare.meta.camera_keys == [] and not (tmp_path / "bare" / "videos").exists()
    assert bare.meta.info["video_path"] is None


def test_writer_is_atomic_and_refuses_to_overwrite(tmp_path):
    root = tmp_path / "ds"
    feats = {"action": {"dtype": "float32", "shape": [2]}}
    with (
        pytest.raises(DatasetFormatError, match="column 'action'"),
        LeRobotWriter(root, fps=10, features=feats) as w,
    ):
        w.add_episode({"action": np.zeros((3, 2), np.float32)})
        w.add_episode({"action": np.array([[0, 1], [np.nan, 2]], np.float32)})
    assert not root.exists() and list(tmp_path.iterdir()) == []  # nothing half-written left behind
    make_synthetic_dataset(root, episodes=1, length=3, cameras=())
    before = (root / "meta" / "info.json").read_bytes()
    with pytest.raises(DatasetExistsError):
        LeRobotWriter(root, fps=10, features=feats)
    with pytest.raises(RuntimeError), LeRobotWriter(root, fps=10, features=feats, overwrite=True) as w:
        w.add_episode({"action": np.zeros((3, 2), np.float32)})
        raise RuntimeError("crash during an overwrite")
    assert (root / "meta" / "info.json").read_bytes() == before  # the old dataset is intact
    with LeRobotWriter(root, fps=5, features=feats, overwrite=True) as w:
        w.add_episode({"action": np.ones((4, 2), np.float32)})
    assert LeRobotDataset(root).meta.fps == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_file_rollover_keeps_episodes_addressable(tmp_path):
    root = make_synthetic_dataset(tmp_path / "roll", episodes=3, length=10, image_hw=(16, 16))
    # Rewrite with tiny per-file limits: each episode lands in its own data and video file.
    feats = LeRobotDataset(root).meta.features
    keep = {k: v for k, v in feats.items() if k in ("observation.image", "observation.state", "action")}
    out = tmp_path / "small_files"
    small = {"data_file_size_mb": 1e-6, "video_file_size_mb": 1e-6}
    # mpeg4 has no encoder lookahead, so each episode's bytes are muxed before the rollover check.
    with LeRobotWriter(out, fps=10, features=keep, video=VideoSettings(codec="mpeg4"), **small) as w:
        for ep in range(3):
            w.add_episode(synthetic_episode(ep, 10, image_hw=(16, 16)), task="t")
    ds = LeRobotDataset(out)
    assert len(ds.meta.data_files) == 3
    assert len({e.videos["observation.image"].path for e in ds.meta.episodes}) == 3
    np.testing.assert_array_equal(
        ds.column("action")[20:30], synthetic_episode(2, 10, image_hw=(16, 16))["action"]
    )
    assert ds.read_frames("observation.image", [25]).shape == (1, 16, 16, 3)
    assert ds.meta.features["observation.image"]["info"]["video.codec"] == "mpeg4"
    frames = ds.episode_frames("observation.image", 2).astype(int)
    assert (
        np.abs(frames - synthetic_episode(2, 10, image_hw=(16, 16))["observation.image"]).mean() < 16
    )  # 16x16 yuv420p: coarse chroma


def test_recorded_wall_clock_timestamps(tmp_path, caplog):
    # A recorder passes the measured (jittery) step times; video frames stay at 1/fps spacing.
    arr = synthetic_episode(0, 20, image_hw=(32, 32))
    jitter = np.random.default_rng(0).uniform(0.002, 0.008, size=20)
    stamps = np.arange(20) / 10 + jitter
    feats = {
        "observation.image": {"dtype": "video", "shape": [32, 32, 3]},
        "observation.state": {"dtype": "float32", "shape": [2]},
        "action": {"dtype": "float32", "shape": [2]},
    }
    with LeRobotWriter(tmp_path / "rec", fps=10, features=feats) as w:
        w.add_episode(arr, task="rollout", timestamps=stamps)
        w.add_episode(arr, task="rollout", timestamps=stamps)
    with caplog.at_level("WARNING", logger="edgeact.train.data"):
        ds = LeRobotDataset(tmp_path / "rec")
    assert "timestamps drift" in caplog.text and "(40 occurrences" in caplog.text
    np.testing.assert_allclose(ds.column("timestamp")[:20], stamps, atol=1e-6)
    assert ds.meta.episodes[1].videos["observation.image"].from_timestamp == pytest.approx(2.0)
    got = ds.episode_frames("observation.image", 1).astype(int)
    assert np.abs(got - arr["observation.image"]).mean(axis=(1, 2, 3)).max() < 6
