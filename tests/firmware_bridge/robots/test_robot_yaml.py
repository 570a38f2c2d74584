"""`rt-run --robot path/to/my_arm.yaml`: an arm described entirely in YAML (issue 11), here a 2-joint
Dynamixel arm written to tmp and driven in --dry-run; the shipped arms are YAML files loaded the same way."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from edgeact.runtime import cli
from edgeact.runtime.robots import RobotError, make_robot

pytest.importorskip("onnx")
_TESTS = Path(__file__).parents[2] / "runtime"
if str(_TESTS) not in sys.path:  # core_graphs imports tiny_policy as a top-level module
    sys.path.insert(0, str(_TESTS))
_spec = importlib.util.spec_from_file_location("edgeact_test_core_graphs_yaml", _TESTS / "core_graphs.py")
core_graphs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(core_graphs)

TWO_JOINT_ARM = """\
bus: dynamixel
name: my_arm
port: /dev/ttyUSB3
baudrate: 1000000
fps: 20
bus_watchdog_s: 0.5
max_step: 0.05
hold_s: 0.0
joints:
  - {name: base, id: 11, lower: -1.5, upper: 1.5}
  - {name: claw, id: 12, lower: 10.0, upper: 60.0, unit: mm, model: 1060, counts_at_lower: 1800,
     counts_at_upper: 2600, max_step: 2.0}
cameras:
  - {name: top, height: 240, width: 320}
"""


@pytest.fixture
def arm_yaml(tmp_path) -> Path:
    path = tmp_path / "my_arm.yaml"
    path.write_text(TWO_JOINT_ARM)
    return path


def test_a_yaml_file_is_a_robot(arm_yaml):
    spec = make_robot(str(arm_yaml), dry_run=True).spec
    assert spec.name == "my_arm" and spec.fps == 20.0
    assert spec.state_names == spec.action_names == ("base", "claw")
    assert spec.camera_names == ("top",) and (spec.cameras[0].height, spec.cameras[0].width) == (240, 320)
    assert spec.action_max_step == (0.05, 2.0)
    assert spec.action_low[0] >= -1.5 and spec.action_high[1] <= 60.0


def test_shipped_robots_are_yaml_files_loaded_the_same_way():
    from edgeact.firmware_bridge.config import CONFIG_DIR

    for name, file in (("widowx", "widowx"), ("can-arm", "can_arm"), ("so101", "so101")):
        by_name = make_robot(name, dry_run=True).spec
        by_file = make_robot(str(CONFIG_DIR / f"{file}.yaml"), dry_run=True).spec
        assert by_name == by_file, name


def test_a_yaml_without_a_known_bus_is_refused_by_name(tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text("bus: ethercat\nname: odd\n")
    with pytest.raises(RobotError, match=r"odd\.yaml: field 'bus' must be one of .* got 'ethercat'"):
        make_robot(str(path))
    with pytest.raises(RobotError, match="cannot read robot file"):
        make_robot(str(tmp_path / "missing.yaml"))


def test_rt_run_drives_a_two_joint_yaml_arm_in_dry_run(arm_yaml, tmp_path):
    spec = make_robot(str(arm_yaml), dry_run=True).spec
    model = core_graphs.build_graph_policy(
        tmp_path / "policy", cameras=(("top", 24, 32, "NHWC"),),
        vectors=(("observation.state", spec.state_names),), action_dim=2,
        action_names=spec.action_names, chunk_size=8, fps=spec.fps,
    )  # fmt: skip
    runtime = tmp_path / "runtime.yaml"
    runtime.write_text("stale_timeout_s: 5.0\nmax_consecutive_overruns: 1000\n")
    out = tmp_path / "run.json"
    code = cli.main(["--robot", str(arm_yaml), "--model", str(model), "--dry-run", "--duration", "1",
                     "--config", str(runtime), "--json", str(out)])  # fmt: skip
    summary = json.loads(out.read_text())
    assert code == 0 and summary["safe_stops"] == [], summary
    assert summary["robot"] == str(arm_yaml) and summary["ticks"] >= 10
    assert summary["stop"]["reason"] == "end"


# --- names that differ: the policy's names (a dataset's) mapped onto the robot's ---------------------------


def _dataset_policy(tmp_path: Path, fps: float = 20.0) -> Path:
    """A policy trained on a dataset's names: state/action joint_0, joint_1 (claw first), camera `top_cam`."""
    return core_graphs.build_graph_policy(
        tmp_path / "policy", cameras=(("top_cam", 24, 32, "NHWC"),),
        vectors=(("observation.state", ("joint_0", "joint_1")),), action_dim=2,
        action_names=("joint_0", "joint_1"), chunk_size=8, fps=fps,
    )  # fmt: skip


def _run(arm_yaml: Path, model: Path, tmp_path: Path, *extra: str) -> tuple[int, dict | None]:
    runtime = tmp_path / "runtime.yaml"
    runtime.write_text("stale_timeout_s: 5.0\nmax_consecutive_overruns: 1000\n")
    out = tmp_path / "run.json"
    code = cli.main(["--robot", str(arm_yaml), "--model", str(model), "--dry-run", "--duration", "1",
                     "--config", str(runtime), "--json", str(out), *extra])  # fmt: skip
    return code, json.loads(out.read_text()) if out.is_file() else None


def test_map_flag_runs_a_policy_on_names_that_differ(arm_yaml, tmp_path):
    model = _dataset_policy(tmp_path)
    code, summary = _run(
        arm_yaml, model, tmp_path, "--map", "joint_0=claw,joint_1=base", "--map", "top_cam=top"
    )
    assert code == 0 and summary["safe_stops"] == [], summary


def test_name_map_in_the_robot_yaml(arm_yaml, tmp_path):
    arm_yaml.write_text(TWO_JOINT_ARM + "name_map: {joint_0: claw, joint_1: base, top_cam: top}\n")
    code, summary = _run(arm_yaml, _dataset_policy(tmp_path), tmp_path)
    assert code == 0 and summary["safe_stops"] == [], summary


def test_mapped_robot_reorders_state_action_and_limits(arm_yaml):
    from edgeact.runtime.robots.base import NameMappedRobot

    robot = make_robot(str(arm_yaml), dry_run=True)
    mapped = NameMappedRobot(
        robot, {"joint_0": "claw", "joint_1": "base", "top_cam": "top"},
        cameras=["top_cam"], state_names=["joint_0", "joint_1"], action_names=["joint_0", "joint_1"],
    )  # fmt: skip
    spec, inner = mapped.spec, robot.spec
    assert spec.camera_names == ("top_cam",) and spec.action_names == ("joint_0", "joint_1")
    assert spec.action_low == (inner.action_low[1], inner.action_low[0])
    assert spec.action_max_step == (2.0, 0.05)
    with mapped:
        obs = mapped.observe()
        raw = robot.observe()
        assert list(obs.images) == ["top_cam"] and obs.state.tolist() == raw.state[[1, 0]].tolist()
        target = obs.state.copy()
        target[0] += 1.0  # the claw, 1 mm (its max_step is 2)
        sent = mapped.command(target)
        assert sent.tolist() == pytest.approx(target.tolist(), abs=1e-3)
        assert robot.arm.last_command[1] == pytest.approx(target[0], abs=1e-3)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--map", "top_cam=top,joint_0=claw"],
            "policy action 'joint_1' is unmapped: robot my_arm has no action",
        ),
        (
            ["--map", "top_cam=top,joint_0=claw,joint_1=claw"],
            "ambiguous name map: policy actions 'joint_0' and",
        ),
        (
            ["--map", "joint_0=claw,joint_0=base"],
            "ambiguous name map: 'joint_0' maps to both 'claw' and 'base'",
        ),
        (["--map", "top_cam=top,joint_0=claw,joint_1=base,elbow=base"], "entries ['elbow'] are no camera"),
        (["--map", "joint_0"], "--map takes POLICY_NAME=ROBOT_NAME"),
    ],
)
def test_unmapped_or_ambiguous_names_are_refused_by_name(arm_yaml, tmp_path, capsys, flags, message):
    code, summary = _run(arm_yaml, _dataset_policy(tmp_path), tmp_path, *flags)
    err = capsys.readouterr().err
    assert code == 2 and summary is None and message in err, err
