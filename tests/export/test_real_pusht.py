"""Parity on real PushT frames: two episodes of the shared diffusion-policy zarr imported as LeRobot v3.0."""

from __future__ import annotations

import json
from pathlib import Path

from edgeact.export.cli import main


def test_parity_on_real_pusht_frames(
    shared_datasets: Path, tmp_path: Path, checkpoint_factory, capsys
) -> None:
    from edgeact.train.data import import_diffusion_policy_zarr

    root = import_diffusion_policy_zarr(
        shared_datasets / "pusht_cchi_v7_replay.zarr", tmp_path / "pusht", max_episodes=2, progress=False
    )
    run = checkpoint_factory(tmp_path / "run", root, cameras=("observation.image",))
    out = tmp_path / "policy.onnx"
    assert main([str(run), "--output", str(out), "--parity-frames", "4", "--parity-random", "1"]) == 0
    captured = capsys.readouterr()
    assert "without real frames" not in captured.out + captured.err
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["parity"]["real_frames"] == 4
    assert sidecar["inputs"][0]["shape"] == [1, 96, 96, 3]
    assert sidecar["state_names"] == sidecar["action_names"] and len(sidecar["action_names"]) == 2
    assert sidecar["parity"]["max_abs_err_normalized"] <= sidecar["parity"]["tolerance"]
