"""The training loop: deterministic sampling, exact resume, NaN stop, feature checks, schedules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from edgeact.train.checkpoint import load_training_state
from edgeact.train.features import FeatureError
from edgeact.train.loop import NonFiniteLossError, Trainer, batch_indices, train
from edgeact.train.optim import lr_factor
from edgeact.train.train_config import TrainError, load_train_config
from train_run_helpers import OneThread, tiny_overrides, weights


@pytest.fixture(autouse=True)
def _one_thread():
    with OneThread():
        yield


def _cfg(dataset, output, **extra):
    return load_train_config(overrides=tiny_overrides(dataset, output, **extra))


def test_batch_indices_are_epoch_permutations_and_rank_slices():
    n, g = 10, 4
    stream = np.concatenate([batch_indices(n, 7, s, g) for s in range(5)])  # 20 = two epochs
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:20])  # a new permutation each epoch
    assert np.array_equal(batch_indices(n, 7, 3, g), batch_indices(n, 7, 3, g))
    assert not np.array_equal(batch_indices(n, 8, 0, g), batch_indices(n, 7, 0, g))
    ranks = [batch_indices(n, 7, 3, g, rank=r, per_rank=2) for r in (0, 1)]
    assert np.array_equal(np.concatenate(ranks), batch_indices(n, 7, 3, g))


def test_lr_schedule():
    cfg = load_train_config(overrides={"steps": 110, "warmup_steps": 10, "scheduler": "cosine",
                                       "min_lr_ratio": 0.1})  # fmt: skip
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.55)
    assert lr_factor(110, cfg) == pytest.approx(0.1)
    const = load_train_config(overrides={"warmup_steps": 4})
    assert [lr_factor(s, const) for s in (0, 3, 4, 1000)] == [0.25, 1.0, 1.0, 1.0]


def test_resume_continues_exactly(tiny_dataset, tmp_path):
    """20 steps straight == 10 steps, then --resume to 20 (bit for bit, on CPU)."""
    straight = train(_cfg(tiny_dataset, tmp_path / "a", steps=20, batch_size=2))
    assert straight.step == 20 and not straight.interrupted
    first = train(_cfg(tiny_dataset, tmp_path / "b", steps=10, batch_size=2))
    assert first.step == 10
    resumed = train(_cfg(tiny_dataset, tmp_path / "b", steps=20, batch_size=2), resume=True)
    assert resumed.step == 20
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert wa.keys() == wb.keys()
    changed = 0
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    w10 = weights(tmp_path / "b/checkpoints/000010")
    changed = sum(not torch.equal(w10[k], wa[k]) for k in wa)
    assert changed > 10  # the last 10 steps really trained
    state = json.loads((tmp_path / "b/checkpoints/last/training_state/state.json").read_text())
    assert state["step"] == 20
    metrics = [json.loads(line) for line in (tmp_path / "b/metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 21))
    assert all(np.isfinite(m["train/loss"]) and "train/lr" in m for m in metrics)


def test_nan_loss_stops_with_step_and_indices(tiny_dataset, tmp_path):
    cfg = _cfg(tiny_dataset, tmp_path / "run", steps=6, save_every=2)
    trainer = Trainer(cfg)
    real = trainer.chunks.get_batch
    seen = []

    def poisoned(indices):
        batch = real(indices)
        seen.append(np.asarray(indices).tolist())
        if len(seen) == 4:  # the batch of step 3
            batch["action"] = batch["action"].copy()
            batch["action"][0, 0, 0] = np.nan
        return batch

    trainer.chunks.get_batch = poisoned
    with pytest.raises(NonFiniteLossError, match=r"at step 3 .*indices \[") as info:
        trainer.run()
    assert str(seen[3]) in str(info.value)
    # The last good checkpoint (step 2) is untouched and still `last`.
    last = tmp_path / "run/checkpoints/last"
    assert last.resolve().name == "000002"
    assert load_training_state(last) == 2


def test_feature_and_output_errors(tiny_dataset, tmp_path):
    with pytest.raises(FeatureError, match=r"cameras \['wrist'\].*\['image'\]"):
        Trainer(_cfg(tiny_dataset, tmp_path / "x", cameras=["wrist"]))
    train(_cfg(tiny_dataset, tmp_path / "run", steps=1))
    with pytest.raises(TrainError, match=r"already holds a run.*--resume"):
        Trainer(_cfg(tiny_dataset, tmp_path / "run", steps=2))


def test_resume_on_other_action_dim_is_refused(tiny_dataset, tmp_path):
    from edgeact.train.data.synthetic import make_synthetic_dataset

    train(_cfg(tiny_dataset, tmp_path / "run", steps=1))
    other = make_synthetic_dataset(tmp_path / "a3", episodes=1, length=12, action_dim=3)
    with pytest.raises(
        FeatureError, match=r"action dim mismatch: \[3\] in the dataset, \[2\] in the checkpoint"
    ):
        Trainer(_cfg(other, tmp_path / "run", steps=2), resume=True)
    assert load_training_state(tmp_path / "run") == 1  # nothing overwritten


def test_eval_every_runs_closed_loop_pusht_episodes(tmp_path):
    from edgeact.train.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "pusht_like", episodes=1, length=12, image_hw=(96, 96))
    cfg = _cfg(data, tmp_path / "run", steps=2, eval_every=2, eval={"episodes": 1, "max_steps": 3})
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/success_rate" in r]
    assert len(evals) == 1 and evals[0]["step"] == 2
    assert evals[0]["eval/n_episodes"] == 1 and evals[0]["eval/mean_steps"] == 3.0
    assert 0.0 <= evals[0]["eval/avg_max_overlap"] <= 1.0


def test_best_checkpoint_follows_the_best_evaluation(tiny_dataset, tmp_path, monkeypatch):
    """`checkpoints/best` names the step of the best closed-loop result (success, then overlap), atomically
    beside `last`; pruning keeps it; the learning curve is drawn from the evaluations."""
    import edgeact.train.eval as ev
    from edgeact.train import checkpoint as ckpt_io

    scripted = iter([(0.1, 0.5), (0.3, 0.6), (0.3, 0.7), (0.2, 0.9), (0.3, 0.65)])  # best: the third

    class _Result:
        def __init__(self, s, o):
            self.s, self.o = s, o

        def summary(self):
            return {"n_episodes": 4, "success_rate": self.s, "avg_max_overlap": self.o, "mean_steps": 1.0}

    monkeypatch.setattr(ev, "evaluate_policy", lambda *a, **k: _Result(*next(scripted)))
    cfg = _cfg(tiny_dataset, tmp_path / "run", steps=10, eval_every=2, save_every=100, keep_checkpoints=1)
    train(cfg)
    root = tmp_path / "run/checkpoints"
    assert (root / "best").resolve().name == "000006" and (root / "last").resolve().name == "000010"
    best = ckpt_io.read_best(tmp_path / "run")
    assert (best["step"], best["success_rate"], best["avg_max_overlap"]) == (6, 0.3, 0.7)
    assert best["samples"] == 6 * cfg.batch_size
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "000006",
        "000010",
        "best",
        "last",
    ]
    assert (tmp_path / "run/learning_curve.png").stat().st_size > 1000


def test_resaving_a_step_keeps_its_evaluation(tiny_dataset, tmp_path, monkeypatch):
    """The final save at a step that an evaluation already saved keeps eval.json, so `best` stays valid."""
    import edgeact.train.eval as ev
    from edgeact.train import checkpoint as ckpt_io

    class _Result:
        def summary(self):
            return {"n_episodes": 1, "success_rate": 1.0, "avg_max_overlap": 1.0, "mean_steps": 1.0}

    monkeypatch.setattr(ev, "evaluate_policy", lambda *a, **k: _Result())
    train(_cfg(tiny_dataset, tmp_path / "run", steps=2, eval_every=2))
    assert ckpt_io.read_best(tmp_path / "run")["step"] == 2
    assert (tmp_path / "run/checkpoints/best").resolve().name == "000002"
