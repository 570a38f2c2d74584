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
