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
