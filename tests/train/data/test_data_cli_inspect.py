"""`edgeact-dataset info`: cameras, episode lengths, robot type, video checks; `view` is legible."""

from __future__ import annotations

import json
import shutil

import numpy as np
from edgeact.train.data.cli import main
from edgeact.train.data.render import ACTION_COLORS, STATE_COLORS, _panel, trace_colors
from edgeact.train.data.synthetic import make_synthetic_dataset


def test_info_lists_cameras_lengths_robot_and_checks_videos(tmp_path, capsys):
    root = make_synthetic_dataset(tmp_path / "ds", episodes=3, length=[5, 7, 6], image_hw=(16, 16))
    assert main(["info", str(root)]) == 0
    out = capsys.readouterr().out
    assert "episode lengths (episode:frames): 0:5 1:7 2:6" in out
    assert "cameras: observation.image (16x16x3)" in out
    assert "robot " in out.splitlines()[0]
    assert "videos: 1 file(s) opened and decoded" in out
    assert main(["info", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["camera_keys"] == ["observation.image"]
    assert summary["episode_lengths"] == {"0": 5, "1": 7, "2": 6}
    assert "robot_type" in summary and summary["videos"] == {"checked": 1, "problems": []}


def test_info_finds_a_video_that_does_not_open(tmp_path, capsys):
    root = make_synthetic_dataset(tmp_path / "ds", episodes=2, length=5, image_hw=(16, 16))
    (video,) = (root / "videos").rglob("*.mp4")
    video.write_bytes(b"\0" * 100)
    assert main(["info", str(root), "--json"]) == 1
    (problem,) = json.loads(capsys.readouterr().out)["videos"]["problems"]
    assert str(video) in problem
    shutil.rmtree(root / "videos")
    assert main(["info", str(root)]) == 1
    assert "missing (camera 'observation.image')" in capsys.readouterr().out


def test_every_trace_stands_out_from_the_white_panel():
    for family in (STATE_COLORS, ACTION_COLORS):
        colors = trace_colors(14, family).astype(int)
        assert (255 - colors).sum(axis=1).min() >= 150  # far from white
        assert len({tuple(c) for c in colors}) == 14
    t = np.arange(50, dtype=np.float32)
    state = np.stack([np.sin(t / 5 + d) for d in range(14)], axis=1)
    action = np.stack([np.cos(t / 7 + d) for d in range(14)], axis=1)
    panel = _panel(state, action, 200).reshape(-1, 3)
    drawn = {tuple(c) for c in panel}
    for color in np.concatenate([trace_colors(14, STATE_COLORS), trace_colors(14, ACTION_COLORS)]):
        assert tuple(color) in drawn


def test_view_names_the_supported_formats(tiny_dataset, tmp_path, capsys):
    assert main(["view", str(tiny_dataset), "--output", str(tmp_path / "x.gif")]) == 2
    err = capsys.readouterr().err
    assert "x.gif" in err and ".gif is not a supported format" in err and ".mp4" in err and ".png" in err
    assert not (tmp_path / "x.gif").exists()
