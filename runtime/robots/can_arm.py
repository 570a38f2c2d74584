"""An arm of CiA 402 drives (CANopen, cyclic synchronous position) as an `rt-run` robot.

    rt-run --robot can-arm --model policy.onnx --can-interface socketcan --can-channel can0 \
           --camera /dev/video0
    rt-run --robot can-arm --model policy.onnx --dry-run   # emulated drives on python-can's virtual bus

Any python-can interface works (socketcan, slcan, pcan, udp_multicast, ...). Same observe/command split as
the WidowX: `command(action)` sends one RPDO per drive and a SYNC and collects the TPDO feedback.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import replace
from typing import Any

from edgeact.firmware_bridge.config import CanArmConfig, load_robot_config
from edgeact.firmware_bridge.errors import BridgeError
from edgeact.runtime.robots.base import RobotError
from edgeact.runtime.robots.widowx import BusArmRobot, camera_configs

log = logging.getLogger(__name__)
_dry_runs = itertools.count()


class CanArmRobot(BusArmRobot):
    """CiA 402 drives on a CAN bus (or emulated drives on a virtual bus under `dry_run`)."""

    def _start_emulator(self) -> CanArmConfig:
        from edgeact.firmware_bridge.sim.cia402_drive import DriveRack

        channel = f"edgeact-dry-run-{os.getpid()}-{next(_dry_runs)}"
        self._emulator = DriveRack("virtual", channel, self.config.node_ids)
        log.warning(
            "%s: --dry-run, emulated CiA 402 drives on virtual CAN channel %s", self.config.name, channel
        )
        return replace(self.config, interface="virtual", channel=channel, feedback_timeout_s=0.02)

    def _make_arm(self, config: Any) -> Any:
        from edgeact.firmware_bridge.canopen.arm import CanArm

        return CanArm(config)

    def _emulator_stop(self) -> None:
        self._emulator.close()


def make_can_arm(
    config: str = "can_arm",
    can_interface: str | None = None,
    can_channel: str | None = None,
    camera: str | None = None,
    dry_run: bool = False,
    **overrides: Any,
) -> CanArmRobot:
    """rt-run factory: `config` is a name under configs/robots or a YAML path; flags override it."""
    try:
        cfg = load_robot_config(config, interface=can_interface, channel=can_channel, **overrides)
    except BridgeError as err:
        raise RobotError(str(err)) from err
    if not isinstance(cfg, CanArmConfig):
        raise RobotError(f"robot config {config} describes a {type(cfg).__name__}, not a CAN arm")
    return CanArmRobot(cfg, camera_configs(cfg, camera, dry_run), dry_run=dry_run)
