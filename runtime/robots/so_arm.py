"""The SO-100 / SO-101 follower arms (six Feetech STS3215, LeRobot's units) as `rt-run` robots.

    rt-run --robot so101 --model policy.onnx --port /dev/ttyACM0 --camera /dev/video0
    rt-run --robot so101 --model policy.onnx --robot-option calibration=~/my_follower.json
    rt-run --robot so101 --model policy.onnx --dry-run      # STS3215 chain emulator behind a pty

State and action are LeRobot's `<motor>.pos` features (degrees for the body joints by default, 0..100 for
the gripper), mapped from servo counts by the arm's LeRobot calibration file, exactly as LeRobot maps them,
so a policy trained in LeRobot on this arm's data commands the same joint positions. The calibration comes
from `calibration` (a path) or LeRobot's default location for `robot_type`/`robot_id`; under `--dry-run`
the YAML's `dry_run_calibration` is used. Same observe/command split and safe stop as the WidowX.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from edgeact.firmware_bridge.calibration import (
    MotorCalibration,
    default_calibration_path,
    load_calibration,
    parse_calibration,
)
from edgeact.firmware_bridge.errors import BridgeError
from edgeact.firmware_bridge.feetech.config import FeetechArmConfig, load_feetech_config
from edgeact.runtime.cameras import CameraConfig
from edgeact.runtime.robots.base import RobotError
from edgeact.runtime.robots.widowx import BusArmRobot, camera_configs

log = logging.getLogger(__name__)


def resolve_calibration(config: FeetechArmConfig, dry_run: bool) -> dict[str, MotorCalibration]:
    """The arm's LeRobot calibration: the YAML's `dry_run_calibration` under --dry-run, else the file."""
    if dry_run and not config.calibration:
        return parse_calibration(config.dry_run_calibration, f"{config.name} dry_run_calibration")
    if config.calibration:
        return load_calibration(config.calibration)
    path = default_calibration_path(config.robot_type, config.robot_id)
    if not path.is_file():
        raise RobotError(
            f"robot {config.name}: no calibration at {path}; run lerobot-calibrate "
            f"--robot.type={config.robot_type} --robot.port={config.port} --robot.id={config.robot_id}, "
            "or pass --robot-option calibration=PATH"
        )
    return load_calibration(path)


class SOArmRobot(BusArmRobot):
    """An SO-100/SO-101 follower on its serial adapter (or the emulated servo chain under `dry_run`)."""

    def __init__(
        self,
        config: FeetechArmConfig,
        calibration: dict[str, MotorCalibration],
        cameras: list[CameraConfig],
        *,
        dry_run: bool = False,
    ) -> None:
        from edgeact.firmware_bridge.feetech.arm import joint_map

        super().__init__(config, cameras, dry_run=dry_run)
        self.calibration = calibration
        low, high = joint_map(config, calibration).limits()
        names = tuple(j.feature for j in config.joints)
        self._spec = replace(
            self._spec,
            state_names=names,
            action_names=names,
            action_low=tuple(low.tolist()),
            action_high=tuple(high.tolist()),
        )

    def _start_emulator(self) -> FeetechArmConfig:
        from edgeact.firmware_bridge.sim.feetech_chain import FeetechChainEmulator

        self._emulator = FeetechChainEmulator(self.config.ids)
        port = self._emulator.start()
        log.warning("%s: --dry-run, STS3215 chain emulator on %s", self.config.name, port)
        # the emulator shares this process (and its GIL) with the loop: give it slack a real bus does not need
        return replace(self.config, port=port, timeout_s=max(self.config.timeout_s, 0.05))

    def _make_arm(self, config: Any) -> Any:
        from edgeact.firmware_bridge.feetech.arm import FeetechArm

        return FeetechArm(config, self.calibration)


def make_so_arm(
    config: str = "so101",
    port: str | None = None,
    camera: str | None = None,
    dry_run: bool = False,
    **overrides: Any,
) -> SOArmRobot:
    """rt-run factory: `config` is a name under configs/robots or a YAML path; flags override it."""
    try:
        cfg = load_feetech_config(config, port=port, **overrides)
        calibration = resolve_calibration(cfg, dry_run)
        return SOArmRobot(cfg, calibration, camera_configs(cfg, camera, dry_run), dry_run=dry_run)
    except BridgeError as err:
        raise RobotError(str(err)) from err


def make_so100(**options: Any) -> SOArmRobot:
    return make_so_arm(**{"config": "so100", **options})


def make_so101(**options: Any) -> SOArmRobot:
    return make_so_arm(**{"config": "so101", **options})
