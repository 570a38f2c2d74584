"""Closed-loop PushT evaluation: shared execution (ensemble_ref) and metrics (pusht_sim), videos, eval-act."""

from __future__ import annotations

import json
from typing import ClassVar

import av
import numpy as np
import pytest
import torch
from edgeact.runtime.robots.pusht_sim import PushTSim, pusht_metrics
from edgeact.train import eval as ev
from edgeact.train.checkpoint import save_checkpoint
from edgeact.train.config import ACTConfig
from edgeact.train.eval_cli import main as eval_main
from edgeact.train.model import ACTPolicy
from edgeact.train.train_config import EvalConfig, config_to_dict, load_train_config
from train_run_helpers import TINY_POLICY, OneThread


def _features(hw: int) -> dict:
    return {
        "observation.image": {
            "dtype": "video",
            "shape": [hw, hw, 3],
            "names": ["height", "width", "channel"],
        },
        "observation.state": {"dtype": "float32", "shape": [2], "names": ["motor_0", "motor_1"]},
        "action": {"dtype": "float32", "shape": [2], "names": ["motor_0", "motor_1"]},
    }


STATS = {
    "observation.image": {"mean": [[[0.9]], [[0.9]], [[0.9]]], "std": [[[0.2]], [[0.2]], [[0.2]]]},
    "observation.state": {"mean": [250.0, 250.0], "std": [100.0, 100.0]},
    "action": {"mean": [250.0, 250.0], "std": [100.0, 100.0]},
}


@pytest.fixture(autouse=True)
def _one_thread():
    with OneThread():
        yield


def _policy(hw: int = 96, **cfg) -> ACTPolicy:
    torch.manual_seed(0)
    policy = ACTPolicy(ACTConfig(**{**TINY_POLICY, **cfg}), _features(hw), STATS)
    return policy.eval()


class _Recorder(PushTSim):
    commands: ClassVar[list[np.ndarray]] = []

    def command(self, action):
        out = super().command(action)
        _Recorder.commands.append(np.array(out))
        return out


def test_chunk_mode_executes_chunks_in_order_and_scores_with_pusht_sim(monkeypatch):
    policy = _policy()
    chunks = []
    real = policy.predict_chunk

    def spy(images, state):
        out = real(images, state)
        chunks.append(out[0].numpy().copy())
        return out

    monkeypatch.setattr(policy, "predict_chunk", spy)
    monkeypatch.setattr(ev, "PushTSim", _Recorder)
    _Recorder.commands = []
    cfg = EvalConfig(episodes=2, seed=3, mode="chunk", n_action_steps=4, max_steps=8)
    result = ev.evaluate_policy(policy, cfg)
    assert len(chunks) == 4  # 8 ticks / 4 entries per chunk, per episode
    cmds = np.array(_Recorder.commands)  # (16, 2)
    expected = np.concatenate([c[:4] for c in chunks])
    np.testing.assert_allclose(cmds, np.clip(expected, 0, 512), rtol=0, atol=1e-5)
    assert [e.steps for e in result.episodes] == [8, 8] and [e.seed for e in result.episodes] == [3, 4]
    assert result.metrics == pusht_metrics(result.episodes)
    assert 0.0 <= result.summary()["avg_max_overlap"] <= 1.0
    assert result.execution == {"mode": "chunk", "temporal_ensemble_coeff": 0.01, "n_action_steps": 4}


def test_ensemble_mode_infers_every_tick_and_is_deterministic(monkeypatch):
    policy = _policy()
    calls = []
    real = policy.predict_chunk
    monkeypatch.setattr(policy, "predict_chunk", lambda i, s: calls.append(1) or real(i, s))
    cfg = EvalConfig(episodes=1, seed=0, max_steps=6)  # mode from the policy: ensemble, m = 0.01
    a = ev.evaluate_policy(policy, cfg)
    assert len(calls) == 6 and a.execution["mode"] == "ensemble"
    b = ev.evaluate_policy(policy, cfg)
    assert a.episodes == b.episodes


def test_video_and_resolution_check(tmp_path):
    cfg = EvalConfig(episodes=1, max_steps=5, video_episodes=1, video_dir=str(tmp_path / "videos"))
    result = ev.evaluate_policy(_policy(), cfg)
    assert len(result.videos) == 1
    with av.open(result.videos[0]) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape[2] == 3  # reset frame + 5 ticks
    with pytest.raises(ev.EvalError, match="96x96x3 frames, the policy was trained on 32x32x3"):
        ev.evaluate_policy(_policy(hw=32), EvalConfig(episodes=1, max_steps=2))


def test_eval_act_cli(tmp_path, capsys):
    policy = _policy()
    cfg = load_train_config(overrides={"policy": TINY_POLICY})
    doc = {"policy": config_to_dict(cfg.policy), "train": config_to_dict(cfg),
           "dataset": {"id": "x", "fps": 10, "features": _features(96), "stats": STATS,
                       "camera_keys": ["observation.image"]}}  # fmt: skip
    save_checkpoint(tmp_path / "run", 7, policy=policy, config=doc)
    out = tmp_path / "r.json"
    rc = eval_main([str(tmp_path / "run"), "--episodes", "2", "--max-steps", "3", "--mode", "chunk",
                    "--n-action-steps", "2", "--seed", "5", "--json", str(out)])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "success rate" in text and "avg max overlap" in text
    res = json.loads(out.read_text())
    assert res["step"] == 7 and res["n_episodes"] == 2 and [e["seed"] for e in res["episodes"]] == [5, 6]
    assert res["execution"]["n_action_steps"] == 2
    assert eval_main([str(tmp_path / "nothing")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
