"""An arm of CiA 402 drives (CANopen, cyclic synchronous position) as an `rt-run` robot.

    rt-run --robot can-arm --model policy.onnx --can-interface socketcan --can-channel can0 \
           --camera /dev/video0
    rt-run --robot can-arm --model policy.onnx --can-interface udp_multicast --can-channel 239.74.163.2 \
           --can-option port=43114 --camera synthetic
    rt-run --robot can-arm --model policy.onnx --dry-run   # emulated drives on python-can's virtual bus

Any python-can interface works (socketcan, slcan, pcan, udp_multicast, ...); any other python-can bus argument
comes from `can_options` in the robot YAML or `--can-option KEY=VALUE` (fd, data_bitrate, port, ...), the flag
adding to or overriding the YAML's entries. Same observe/command split as
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
            "%s: --dry-run, emulated CiA 402 drives on virtual CAN channel %s (can_options %s not used)",
            self.config.name,
            channel,
            self.config.can_options,
        )
        # one Python process hosts the loop, the bus and six drives: relax the timing the drives check
        return replace(
            self.config,
            interface="virtual",
            channel=channel,
            can_options={},
            feedback_timeout_s=max(self.config.feedback_timeout_s, 0.02),
            host_heartbeat_timeout_ms=max(self.config.host_heartbeat_timeout_ms, 500),
        )

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
    can_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> CanArmRobot:
    """rt-run factory: `config` is a name under configs/robots or a YAML path; flags override it
    (`can_options` entries add to or override the YAML's `can_options`)."""
    try:
        cfg = load_robot_config(config, interface=can_interface, channel=can_channel, **overrides)
        if not isinstance(cfg, CanArmConfig):
            raise RobotError(f"robot config {config} describes a {type(cfg).__name__}, not a CAN arm")
        if can_options:
            cfg = replace(cfg, can_options={**cfg.can_options, **can_options})
    except BridgeError as err:
        raise RobotError(str(err)) from err
    return CanArmRobot(cfg, camera_configs(cfg, camera, dry_run), dry_run=dry_run)
