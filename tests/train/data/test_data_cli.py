"""`edgeact-dataset import | info | view` end to end."""

from __future__ import annotations

import json

import h5py
import numpy as np
from edgeact.train.data import LeRobotDataset
from edgeact.train.data.cli import main
from edgeact.train.data.video import probe


def test_info(tiny_dataset, capsys):
    assert main(["info", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "episodes 3  frames 90  fps 10" in out
    assert "observation.image" in out and "codec av1" in out and "synthetic task" in out
    assert main(["info", str(tiny_dataset), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 90 and summary["features"]["action"]["shape"] == [2]


def test_view_mp4_and_png(tiny_dataset, tmp_path, capsys):
    assert main(["view", str(tiny_dataset), "--episode", "1", "--output", str(tmp_path / "ep.mp4")]) == 0
    video = probe(tmp_path / "ep.mp4")
    assert video["codec"] == "h264" and video["width"] == 384 and video["height"] == 384 + 96
    assert main(["view", str(tiny_dataset), "--episode", "1", "--output", str(tmp_path / "ep.png")]) == 0
    assert (tmp_path / "ep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["view", str(tiny_dataset), "--episode", "9", "--output", str(tmp_path / "x.mp4")]) == 2


def test_import_hdf5_and_refuse_overwrite(tmp_path, capsys):
    src = tmp_path / "eps"
    src.mkdir()
    for ep in range(2):
        with h5py.File(src / f"episode_{ep}.hdf5", "w") as f:
            f.create_dataset("observations/qpos", data=np.full((6, 3), ep, np.float64))
            f.create_dataset("observations/images/top", data=np.full((6, 16, 16, 3), 100 + ep, np.uint8))
            f.create_dataset("action", data=np.ones((6, 3)))
    out = tmp_path / "out"
    assert main(["import", str(src), str(out), "--fps", "20", "--codec", "h264", "--quiet"]) == 0
    assert "2 episodes, 12 frames" in capsys.readouterr().out
    ds = LeRobotDataset(out)
    assert ds.meta.fps == 20 and ds.meta.features["observation.images.top"]["info"]["video.codec"] == "h264"
    assert main(["import", str(src), str(out), "--quiet"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing")]) == 1


def test_xy_overlay_marks_the_action(tmp_path):
    from edgeact.train.data.render import episode_frames
    from edgeact.train.data.writer import LeRobotWriter

    feats = {
        "observation.image": {"dtype": "video", "shape": [32, 32, 3]},
        "action": {"dtype": "float32", "shape": [2]},
    }
    action = np.tile([[100.0, 300.0]], (4, 1)).astype(np.float32)  # x = 100 / 400, y = 300 / 400 of the view
    with LeRobotWriter(tmp_path / "xy", fps=10, features=feats) as w:
        w.add_episode({"observation.image": np.full((4, 32, 32, 3), 255, np.uint8), "action": action})
    ds = LeRobotDataset(tmp_path / "xy")
    plain = episode_frames(ds, 0)
    marked = episode_frames(ds, 0, xy_extent=400)
    side = plain.shape[2]  # the 32 px camera scaled to 384
    assert tuple(marked[0, int(0.75 * side), int(0.25 * side)]) == (220, 0, 0)
    assert (plain[0, int(0.75 * side), int(0.25 * side)] > 200).all()
