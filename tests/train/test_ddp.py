"""DDP under torchrun: 2 CPU processes (gloo) reach the weights of 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from edgeact.train.loop import Trainer, train
from edgeact.train.train_config import load_train_config
from safetensors.torch import load_file
from train_run_helpers import OneThread, tiny_cli, tiny_overrides, weights


def _moments(run) -> dict[str, torch.Tensor]:
    state = load_file(str(run / "checkpoints/last/training_state/state.safetensors"))
    return {k: v for k, v in state.items() if k.endswith(".exp_avg")}


def _step0(dataset, out, extra) -> dict[str, torch.Tensor]:
    with OneThread():
        trainer = Trainer(load_train_config(overrides=tiny_overrides(dataset, out, **extra)))
    return {k: v.detach().clone() for k, v in trainer.policy.state_dict().items()}


def test_two_processes_match_one_with_the_same_global_batch(tiny_dataset, tmp_path):
    # Dropout and the CVAE's sampling draw per-rank noise, so they are off; everything else is the real model.
    extra = {"steps": 3, "lr": 1e-5, "lr_backbone": 1e-5, "policy": {"dropout": 0.0, "use_vae": False}}
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    args = tiny_cli(tiny_dataset, ddp_out, batch_size=2, num_threads=1, **extra)
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd = [*run, "-m", "edgeact.train.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with OneThread():
        train(load_train_config(overrides=tiny_overrides(tiny_dataset, single_out, batch_size=4, **extra)))
    # The averaged gradients agree: AdamW's first moments (a linear function of the gradients).
    md, ms = _moments(ddp_out), _moments(single_out)
    assert md.keys() == ms.keys() and len(md) > 50
    floor = 1e-6 * max(float(v.abs().max()) for v in ms.values())  # entries below are rounding noise
    for k in md:
        err, scale = float((md[k] - ms[k]).abs().max()), float(ms[k].abs().max())
        assert err <= 1e-4 * scale + floor, (k, tuple(md[k].shape), err, scale)
    # And so do the weights. (At the default lr of 1e-5; with a much larger lr, Adam's normalisation turns
    # summation-order noise in near-zero gradient entries into updates of size ~lr in a few entries.)
    wd, ws = weights(ddp_out), weights(single_out)
    assert wd.keys() == ws.keys()
    total = sum(v.numel() for v in wd.values())
    for k in wd:
        torch.testing.assert_close(wd[k], ws[k], rtol=0, atol=1e-6, msg=k)
    init = _step0(tiny_dataset, tmp_path / "init", extra)
    moved = sum(int(((wd[k] - init[k]).abs() > 1e-6).sum()) for k in wd if k in init)
    assert moved > 0.5 * total  # the run really trained
    doc = json.loads((ddp_out / "checkpoints/last/config.json").read_text())
    assert doc["world_size"] == 2 and doc["train"]["batch_size"] == 2
    # Only rank 0 wrote: one metrics file with one line per step, one checkpoint folder.
    assert len((ddp_out / "metrics.jsonl").read_text().splitlines()) == 3
    assert sorted(p.name for p in (ddp_out / "checkpoints").iterdir()) == ["000003", "last"]
