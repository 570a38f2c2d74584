"""rt-run end to end on pusht-sim through the C++ runtime: metrics, outputs, refusals, safe stops."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_policy import build_tiny_policy

pytest.importorskip("gym_pusht")

from edgeact.runtime.cli import main
from edgeact.runtime.ensemble_ref import ActionExecutor, ExecutionConfig
from edgeact.runtime.robots.pusht_sim import coverage_to_reward, make_pusht_env, reset_pusht

STEPS = 12


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="module")
def model(policy_dir: Path) -> Path:
    return build_tiny_policy(policy_dir, target=(300.0, 200.0), chunk_size=10)


def _reference_rollouts(model: Path, seeds: list[int], execution: ExecutionConfig) -> list[tuple[int, float]]:
    """(steps, max reward) per episode from onnxruntime + the numpy executor, outside the C++ core."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    env = make_pusht_env(max_episode_steps=STEPS)
    out = []
    for seed in seeds:
        raw, _ = reset_pusht(env, seed=seed)
        ex = ActionExecutor(execution)
        ex.reset()
        rewards, done = [], False
        while not done:
            feeds = {
                "observation.image": raw["pixels"][None],
                "observation.state": raw["agent_pos"].astype(np.float32)[None],
            }
            action = ex.step(lambda feeds=feeds: sess.run(None, feeds)[0])
            action = np.clip(action, 0.0, 512.0).astype(np.float32)
            raw, _, term, trunc, info = env.step(action)
            rewards.append(coverage_to_reward(info["coverage"]))
            done = term or trunc
        out.append((len(rewards), max(rewards)))
    env.close()
    return out


def _run(tmp_path: Path, model: Path, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "summary.json"
    argv = ["--robot", "pusht-sim", "--model", str(model), "--episodes", "2", "--seed", "5"]
    argv += ["--max-episode-steps", str(STEPS), "--json", str(out), *extra]
    rc = main(argv)
    return rc, (json.loads(out.read_text()) if out.exists() else {})


@pytest.mark.parametrize(
    ("flags", "execution"),
    [
        ((), ExecutionConfig(chunk_size=10, action_dim=2, mode="ensemble", temporal_ensemble_coeff=0.01)),
        (
            ("--mode", "chunk", "--n-action-steps", "4"),
            ExecutionConfig(10, 2, mode="chunk", n_action_steps=4),
        ),
    ],
)
def test_closed_loop_matches_python_reference(tmp_path: Path, model: Path, flags, execution, capsys) -> None:
    rc, summary = _run(tmp_path, model, *flags)
    assert rc == 0
    printed = capsys.readouterr().out
    assert "success rate" in printed and "avg max overlap" in printed and "p99 us" in printed
    assert summary["execution"]["mode"] == execution.mode
    assert summary["execution"]["n_action_steps"] == execution.n_action_steps
    ref = _reference_rollouts(model, [5, 6], execution)
    got = [(ep["steps"], ep["max_reward"]) for ep in summary["episodes"]]
    assert [s for s, _ in got] == [s for s, _ in ref]
    np.testing.assert_allclose([r for _, r in got], [r for _, r in ref], atol=1e-4)
    assert summary["avg_max_overlap"] == pytest.approx(np.mean([r for _, r in ref]), abs=1e-4)
    assert summary["success_rate"] == 0.0 and summary["n_episodes"] == 2
    ticks = sum(s for s, _ in ref)
    assert summary["ticks"] == ticks
    for stage in ("pre", "infer", "ensemble", "post", "step", "overhead"):
        stats = summary["latency"][stage]
        assert stats["n"] == ticks and 0 <= stats["p50_us"] <= stats["p99_us"] <= stats["max_us"]
    assert summary["statuses"] == {"OK": ticks}
    assert summary["safe_stops"] == []
    assert summary["peak_rss_mb"] > 0 and summary["time_to_first_action_s"] > 0


def test_video_and_record(tmp_path: Path, model: Path) -> None:
    av = pytest.importorskip("av")
    video, record = tmp_path / "roll.mp4", tmp_path / "rollouts"
    rc, summary = _run(
        tmp_path, model, "--video", str(video), "--record", str(record), "--task", "push the T"
    )
    assert rc == 0
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == summary["ticks"] and frames[0].shape == (680, 680, 3)
    from edgeact.train.data.reader import LeRobotDataset

    ds = LeRobotDataset(record)
    assert ds.meta.fps == 10 and len(ds.meta.episodes) == 2
    assert ds.meta.total_frames == summary["ticks"]
    assert "observation.image" in ds.meta.camera_keys


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action_names": ("x", "y"), "state_names": ("x", "y")}, "action_names differ"),
        ({"fps": 50}, "fps differs: model 50"),
        ({"cameras": (("top", 96, 96),)}, r"camera names differ: model \['top'\], robot \['image'\]"),
        ({"cameras": (("image", 64, 48),)}, "camera 'image' resolution differs: model 64x48"),
    ],
)
def test_mismatched_sidecar_is_refused_naming_the_field(tmp_path: Path, kwargs, message, capsys) -> None:
    bad = build_tiny_policy(tmp_path / "bad", **kwargs)
    rc, summary = _run(tmp_path, bad)
    assert rc == 2 and summary == {}
    err = capsys.readouterr().err
    assert "does not fit robot pusht-sim" in err
    assert pytest.importorskip("re").search(message, err), err


def test_missing_and_corrupt_models_are_refused(tmp_path: Path, model: Path, capsys) -> None:
    rc, _ = _run(tmp_path, tmp_path / "nope.onnx")
    assert rc == 2 and "nope.onnx" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    shutil.copy(model.with_suffix(".json"), corrupt / "policy.json")
    data = model.read_bytes()
    (corrupt / "policy.onnx").write_bytes(data[: len(data) // 2])
    rc, _ = _run(tmp_path, corrupt / "policy.onnx")
    assert rc == 2 and "policy.onnx" in capsys.readouterr().err


def test_nan_output_safe_stops_every_episode(tmp_path: Path) -> None:
    nan_model = build_tiny_policy(tmp_path / "nan", target=(float("nan"), 0.0))
    rc, summary = _run(tmp_path, nan_model)
    assert rc == 0  # a simulated run reports the stops, it does not fail the command
    assert len(summary["safe_stops"]) == 2 and all("BAD_OUTPUT" in r for r in summary["safe_stops"])
    assert [ep["steps"] for ep in summary["episodes"]] == [
        0,
        0,
    ]  # no stale or NaN command ever reached the env
    assert summary["statuses"] == {"BAD_OUTPUT": 2}


def test_engine_file_selects_tensorrt_backend(tmp_path: Path, model: Path, capsys) -> None:
    """`.engine` means TensorRT: on a build without it the refusal says so (never a silent ORT fallback)."""
    import hashlib

    from edgeact.runtime.core import available_backends

    engine_dir = tmp_path / "engine"
    engine_dir.mkdir()
    engine = engine_dir / "policy.engine"
    engine.write_bytes(b"not a serialized engine")
    sidecar = json.loads(model.with_suffix(".json").read_text())
    sidecar.update(
        format="tensorrt",
        model_file=engine.name,
        model_sha256=hashlib.sha256(engine.read_bytes()).hexdigest(),
        engine={"gpu": "Orin", "compute_capability": "8.7", "tensorrt_version": "10.3"},
    )
    engine.with_suffix(".json").write_text(json.dumps(sidecar))
    rc, summary = _run(tmp_path, engine)
    assert rc == 2 and summary == {}
    err = capsys.readouterr().err
    assert "policy.engine" in err
    if "tensorrt" not in available_backends():
        assert "TensorRT" in err
