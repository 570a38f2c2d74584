"""`rt-run --dry-run` on the emulated WidowX: every stop names its reason in the log line and in the JSON
(overrun, stale observation, bridge fault), and a model slower than the period is refused before torque-on
(docs/rt-run.md, "Stops" and "Model speed")."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from edgeact.runtime import cli, runner
from edgeact.runtime.robots import make_robot

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

_TESTS = Path(__file__).parents[2] / "runtime"
if str(_TESTS) not in sys.path:  # core_graphs imports tiny_policy as a top-level module
    sys.path.insert(0, str(_TESTS))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"edgeact_test_{name}", _TESTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FPS = 50.0
OPTIONS = {"fps": FPS, "bus_watchdog_s": 0.5, "hold_s": 0.0}


def _options() -> list[str]:
    return [x for k, v in OPTIONS.items() for x in ("--robot-option", f"{k}={v}")]


def _runtime(tmp_path: Path, **fields) -> Path:
    path = tmp_path / "runtime.yaml"
    base = {"robot": "widowx", "stale_timeout_s": 5.0, "max_consecutive_overruns": 1000, **fields}
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in base.items()))
    return path


def slow_policy(out: Path, matmuls: int, execution: dict | None = None) -> Path:
    """A WidowX policy whose output does not depend on the slow part but ONNX Runtime must compute it:
    `matmuls` (512, 256) x (256, 256) products fed by the state (so nothing is constant-folded)."""
    sidecar = _load("tiny_policy")
    from edgeact.runtime.policy_io import CameraInput, PolicyIO

    spec = make_robot("widowx", dry_run=True, **OPTIONS).spec
    k, a = 50, len(spec.action_names)  # 1 s of actions: async keeps up even with a very slow model
    io = PolicyIO(
        cameras=(CameraInput("cam_high", 12, 16, 3, "NHWC"),),
        vectors=_load("core_graphs").vector_inputs((("observation.state", tuple(spec.state_names)),)),
        action_names=tuple(spec.action_names),
        chunk_size=k,
    )
    rng = np.random.default_rng(0)
    cam, vec = io.cameras[0], io.vectors[0]
    inits = [
        numpy_helper.from_array(np.zeros((1, k, a), np.float32), "B"),
        numpy_helper.from_array(rng.uniform(-1, 1, (a, 256)).astype(np.float32), "S"),
        numpy_helper.from_array(np.array([512, 1], np.int64), "reps"),
        numpy_helper.from_array((rng.uniform(-1, 1, (256, 256)) / 16).astype(np.float32), "W"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("MatMul", [vec.input_name, "S"], ["h0"]),  # (1, 256)
        helper.make_node("Tile", ["h0", "reps"], ["x0"]),  # (512, 256)
    ]
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"x{i}", "W"], [f"x{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"x{matmuls}"], ["r"], keepdims=0),
        helper.make_node("Mul", ["r", "zero"], ["r0"]),
        helper.make_node("Cast", [cam.input_name], ["img"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["img"], ["ri"], keepdims=0),
        helper.make_node("Mul", ["ri", "zero"], ["ri0"]),
        helper.make_node("Add", ["r0", "ri0"], ["z"]),
        helper.make_node("Add", ["B", "z"], ["action"]),
    ]
    inputs = [
        helper.make_tensor_value_info(cam.input_name, TensorProto.UINT8, cam.shape),
        helper.make_tensor_value_info(vec.input_name, TensorProto.FLOAT, [1, vec.dim]),
    ]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "policy.onnx"
    sha = sidecar.write_action_graph(path, "slow_policy", nodes, inputs, inits, k, a)
    sidecar.write_sidecar(path, io, sha, fps=FPS, execution=execution, stats={})
    return path


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory) -> Path:
    # 100 x 67 MFLOP: tens of ms even on a fast core (100 GFLOP/s), far above the 20 ms period at 50 Hz
    return slow_policy(tmp_path_factory.mktemp("slow"), matmuls=100)


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory) -> Path:
    return slow_policy(tmp_path_factory.mktemp("fast"), matmuls=0)


def _rt_run(model: Path, tmp_path: Path, *extra: str, **runtime) -> tuple[int, dict | None]:
    out = tmp_path / "run.json"
    config = _runtime(tmp_path, **runtime)
    argv = ["--robot", "widowx", "--model", str(model), "--dry-run", "--duration", "3",
            "--config", str(config), "--json", str(out), *_options(), *extra]  # fmt: skip
    code = cli.main(argv)
    return code, json.loads(out.read_text()) if out.is_file() else None


def _stop_line(caplog) -> str:
    lines = [r.getMessage() for r in caplog.records if "safe stop (" in r.getMessage()]
    assert lines, "no safe-stop log line"
    return lines[0]


def test_overrun_stop_names_the_overruns(slow_model, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    code, summary = _rt_run(slow_model, tmp_path, "--mode", "chunk", max_consecutive_overruns=1)
    assert code == 3
    assert "consecutive overruns (limit 1)" in summary["safe_stops"][0]
    assert summary["stop"]["reason"] == "watchdog" and "overruns" in summary["stop"]["detail"]
    line = _stop_line(caplog)
    assert "safe stop (watchdog)" in line and "consecutive overruns (limit 1)" in line, line


def test_stale_observation_stop_names_the_age(fast_model, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    code, summary = _rt_run(fast_model, tmp_path, stale_timeout_s=0.001)  # every observation is too old
    assert code == 3
    assert "observation" in summary["safe_stops"][0] and "timeout 1.0 ms" in summary["safe_stops"][0]
    assert summary["stop"]["reason"] == "watchdog" and "timeout 1.0 ms" in summary["stop"]["detail"]
    line = _stop_line(caplog)
    assert "safe stop (watchdog)" in line and "timeout 1.0 ms" in line, line


def test_bridge_fault_stop_names_servo_and_error(fast_model, tmp_path, caplog, monkeypatch):
    from edgeact.runtime.robots.widowx import WidowXRobot

    start = WidowXRobot._start_emulator

    def start_then_fault(self):
        config = start(self)
        # an overload on the waist servo once the loop runs: the next status packet carries the alert
        threading.Timer(1.0, self._emulator.inject, ("hardware_alert", 1)).start()
        return config

    monkeypatch.setattr(WidowXRobot, "_start_emulator", start_then_fault)
    caplog.set_level(logging.INFO)
    code, summary = _rt_run(fast_model, tmp_path)
    assert code == 3
    assert summary["stop"]["reason"] == "hardware_alert" and summary["stop"]["fault"]
    assert "1" in summary["stop"]["detail"] and summary["stop"]["detail"] in summary["safe_stops"][0]
    line = _stop_line(caplog)
    assert "safe stop (hardware_alert)" in line and summary["stop"]["detail"] in line, line


def test_the_runtime_clamps_and_the_bridge_only_checks(fast_model, tmp_path):
    """The model asks for 0 on every joint: the gripper's 0 mm is below its 30 mm limit, and far from where it
    stands (more than its 5 mm max_step). The C++ post-processor clamps both; the bridge, which stops on a
    violation instead of clamping again, never sees one."""
    code, summary = _rt_run(fast_model, tmp_path, "--duration", "1")
    assert code == 0 and summary["safe_stops"] == [], summary.get("stop")
    assert summary["stop"]["reason"] == "end"


def test_slow_model_in_ensemble_mode_is_refused_before_torque_on(slow_model, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    code, summary = _rt_run(slow_model, tmp_path, "--mode", "ensemble")
    assert code == 2 and summary is None
    err = capsys.readouterr().err
    assert "ms (median of" in err and "20.00 ms" in err and "--mode async" in err, err
    assert not any("torqued on" in r.getMessage() for r in caplog.records)


def test_slow_model_switches_to_async_when_the_config_says_so(slow_model, tmp_path):
    code, summary = _rt_run(slow_model, tmp_path, "--mode", "ensemble", "--duration", "1", slow_model="async")
    assert summary is not None and summary["execution"]["mode"] == "async", summary
    assert summary["warmup_step_ms"] > 0.8 * 1e3 / FPS
    assert code == 0, summary["safe_stops"]


def test_stubbed_6_4_ms_step_on_a_200_hz_arm_is_refused(fast_model, monkeypatch):
    """The issue's numbers: a 6.4 ms model on a 200 Hz arm (5 ms period) in ensemble mode."""
    from edgeact.runtime.config import RuntimeConfig
    from edgeact.runtime.core import Policy

    monkeypatch.setattr(runner, "measure_step_s", lambda *a, **k: 0.0064)
    policy = Policy.load(fast_model)
    spec = make_robot("widowx", dry_run=True, **{**OPTIONS, "fps": 200.0}).spec
    with pytest.raises(runner.ModelTooSlowError, match=r"6\.40 ms .* 200 Hz is 5\.00 ms"):
        runner.check_model_speed(policy, spec, RuntimeConfig(robot="widowx", mode="ensemble"))
    cfg, step = runner.check_model_speed(policy, spec, RuntimeConfig(robot="widowx", slow_model="async"))
    assert cfg.mode == "async" and step == 0.0064
