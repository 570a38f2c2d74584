"""The WidowX 250 6DOF (Dynamixel Protocol 2.0) as an `rt-run` robot, and the base shared with the CAN arm.

    rt-run --robot widowx --model policy.onnx --port /dev/ttyUSB0 --camera /dev/video0 [--duration S]
    rt-run --robot widowx --model policy.onnx --dry-run        # servo-chain emulator behind a pty

`observe()` returns the newest camera frames and the joint state read in the previous tick (no bus I/O);
`command(action)` does the tick's bus work (one Sync Write of goal positions, one Sync Read of feedback).
A fault on the bus, NaN in a command or a stalled camera safe-stops the arm (hold, then torque off) and
raises `RobotStoppedError`; after that nothing more is sent. Ctrl-C or SIGTERM during `connect()` (after
torque-on, while the cameras start) safe-stops the arm before the exception leaves `connect()`. State and
action are the joint positions in robot units (radians; the gripper opening in mm) in the order of
`configs/robots/widowx.yaml`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
from edgeact.firmware_bridge.config import DynamixelArmConfig, load_robot_config
from edgeact.firmware_bridge.errors import BridgeError
from edgeact.firmware_bridge.safety import StopReason, StopRecord, split_reason
from edgeact.runtime.cameras import SYNTHETIC, CameraConfig, CameraRig
from edgeact.runtime.robots.base import (
    CameraSpec,
    Observation,
    Robot,
    RobotError,
    RobotNotConnectedError,
    RobotSpec,
    RobotStoppedError,
)

log = logging.getLogger(__name__)


def camera_configs(config: Any, camera: str | None, dry_run: bool) -> list[CameraConfig]:
    """The robot's cameras with their sources: `--camera SRC` (first camera) or `name=SRC,name2=SRC2`;
    synthetic frames under `--dry-run` when no source is given."""
    sources: dict[str, str] = {}
    if camera:
        parts = [p for p in camera.split(",") if p]
        for i, part in enumerate(parts):
            name, sep, src = part.partition("=")
            if sep and not name.startswith("/"):
                sources[name] = src
            elif i < len(config.cameras):
                sources[config.cameras[i].name] = part
    out = []
    for cam in config.cameras:
        src = sources.get(cam.name) or (SYNTHETIC if dry_run else None)
        if src is None:
            raise RobotError(f"robot {config.name}: camera {cam.name!r} has no source (pass --camera)")
        out.append(
            CameraConfig(name=cam.name, source=src, width=cam.width, height=cam.height, fps=config.fps)
        )
    unknown = sorted(set(sources) - {c.name for c in config.cameras})
    if unknown:
        raise RobotError(f"robot {config.name}: --camera names {unknown} are not cameras of this robot")
    return out


@contextlib.contextmanager
def _signals_raise_once() -> Iterator[None]:
    """While a robot connects (before `rt-run` installs its own handlers), SIGINT raises KeyboardInterrupt and
    SIGTERM raises SystemExit(143), once: the bring-up's handler then safe-stops the arm, and a second
    signal cannot cut that stop short. Handlers a program installed itself are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if fired:
            log.warning("signal %d during the safe stop: finishing the stop first", signum)
            return
        fired.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig, old in previous.items():
        if old in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            if old in (signal.SIG_DFL, signal.default_int_handler):
                signal.signal(sig, old)


def _exit_reason(err: BaseException) -> str:
    if isinstance(err, KeyboardInterrupt):
        return StopReason.SIGINT.value
    if isinstance(err, SystemExit):
        return StopReason.SIGTERM.value
    return StopReason.ERROR.value


def _step_limits(config: Any) -> tuple[float, ...] | None:
    """Per joint: its own `max_step`, else the arm's (inf where neither is set); None: no joint has one."""
    arm = getattr(config, "max_step", None)
    steps = [getattr(j, "max_step", None) or arm for j in config.joints]
    return (
        None if all(s is None for s in steps) else tuple(math.inf if s is None else float(s) for s in steps)
    )


class BusArmRobot(Robot):
    """A real arm behind a firmware-bridge bus plus cameras; subclasses build the arm and the emulator."""

    def __init__(self, config: Any, cameras: list[CameraConfig], *, dry_run: bool = False) -> None:
        self.config = config
        self.dry_run = dry_run
        self._camera_configs = cameras
        self._rig: CameraRig | None = None
        self._emulator: Any = None
        self.arm: Any = None
        self._spec = RobotSpec(
            name=config.name,
            fps=float(config.fps),
            cameras=tuple(CameraSpec(c.name, c.height, c.width) for c in cameras),
            state_names=tuple(j.name for j in config.joints),
            action_names=tuple(j.name for j in config.joints),
            action_low=tuple(float(j.lower) for j in config.joints),
            action_high=tuple(float(j.upper) for j in config.joints),
            action_max_step=_step_limits(config),
        )

    # subclasses: start an emulator (dry run) and return the config pointing at it; build the arm
    def _start_emulator(self) -> Any:
        raise NotImplementedError

    def _make_arm(self, config: Any) -> Any:
        raise NotImplementedError

    @property
    def spec(self) -> RobotSpec:
        return self._spec

    @property
    def is_connected(self) -> bool:
        return self.arm is not None and self.arm.is_connected

    @property
    def stop_record(self) -> StopRecord | None:
        return None if self.arm is None else self.arm.stop_record

    def connect(self) -> None:
        """Bus bring-up (torque on), then the cameras (waiting for their first frames). Any exit after
        torque-on, Ctrl-C and SIGTERM included, ends in the arm's safe stop before the exception leaves."""
        config = self._start_emulator() if self.dry_run else self.config
        self.arm = self._make_arm(config)
        with _signals_raise_once():
            try:
                self.arm.connect()
                self._adopt_arm_limits()
                self._rig = CameraRig(self._camera_configs)
                self._rig.start()
            except BaseException as err:
                if self.arm.is_connected:
                    self.arm.safe_stop(_exit_reason(err), f"during bring-up: {type(err).__name__}: {err}")
                self.disconnect()
                if isinstance(err, BridgeError):
                    raise RobotError(f"robot {self.config.name}: {err}") from err
                raise

    def _adopt_arm_limits(self) -> None:
        """The step limits the arm checks, as known after bring-up (a CiA 402 drive's 0x607F when
        `max_step` is null), become the spec's: the runtime clamps exactly where the bridge checks."""
        steps = getattr(self.arm, "step_limits", None)
        if steps is not None and np.all(np.asarray(steps) > 0):
            step = tuple(float(x) for x in steps)
            self._spec = replace(self._spec, action_max_step=None if all(map(math.isinf, step)) else step)

    def observe(self) -> Observation:
        if self.arm is None or self.arm.state is None or self._rig is None:
            raise RobotNotConnectedError(f"robot {self.config.name} is not connected")
        stalls = self._rig.stall_reasons()
        if stalls:
            self.safe_stop(f"{StopReason.CAMERA_STALL.value}: {stalls[0]}")
            raise RobotStoppedError(f"robot {self.config.name} stopped: {stalls[0]}")
        images, stamps = self._rig.read()
        state = self.arm.state
        return Observation(images, state.positions.astype(np.float32), state.timestamp, stamps)

    def command(self, action: np.ndarray) -> np.ndarray:
        return self.command_ticks(action, 1)

    def command_ticks(self, action: np.ndarray, ticks: int) -> np.ndarray:
        """Send `action` as it is: the runtime's post-processor clamped it (the one clamp); the arm checks
        it against the joint limits and `ticks` x max_step and safe-stops on a violation, naming the joint."""
        if self.arm is None:
            raise RobotNotConnectedError(f"robot {self.config.name} is not connected")
        if self.arm.stop_record is not None:
            raise RobotStoppedError(
                f"robot {self.config.name} is stopped ({self.arm.stop_record.reason.value})"
            )
        act = np.asarray(action, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(act)):
            self.arm.safe_stop(StopReason.NAN, f"command holds NaN/Inf: {act.tolist()}")
            raise RobotStoppedError(f"robot {self.config.name} refused a NaN command and stopped")
        if act.shape != (len(self.spec.action_names),):
            raise RobotError(
                f"{self.spec.name} takes {len(self.spec.action_names)} actions, got shape {np.shape(action)}"
            )
        try:
            if hasattr(self.arm, "step_limits"):  # an arm that checks instead of clamping
                self.arm.step(act.astype(np.float64), ticks=ticks)
            else:
                self.arm.step(act.astype(np.float64))
        except BridgeError as err:
            raise RobotStoppedError(f"robot {self.config.name} stopped: {err}") from err
        return self.arm.last_command.astype(np.float32)

    def safe_stop(self, reason: str) -> None:
        if self.arm is not None:  # the kind ("watchdog") and what happened go to the log line and the record
            self.arm.safe_stop(reason, split_reason(reason)[1])

    def disconnect(self) -> None:
        if self.arm is not None:
            self.arm.disconnect()
        if self._rig is not None:
            self._rig.stop()
            self._rig = None
        if self._emulator is not None:
            time.sleep(0.01)
            self._emulator_stop()
            self._emulator = None

    def _emulator_stop(self) -> None:
        self._emulator.stop()


class WidowXRobot(BusArmRobot):
    """WidowX 250 6DOF on a U2D2 (or the emulated servo chain under `dry_run`)."""

    def __init__(self, config: DynamixelArmConfig, cameras: list[CameraConfig], *, dry_run: bool = False):
        from edgeact.firmware_bridge.dynamixel.arm import joint_limits

        super().__init__(config, cameras, dry_run=dry_run)
        low, high = joint_limits(
            config
        )  # the limits the servos hold (whole counts), so the loop clamps there
        self._spec = replace(self._spec, action_low=tuple(low.tolist()), action_high=tuple(high.tolist()))

    def _start_emulator(self) -> DynamixelArmConfig:
        from edgeact.firmware_bridge.sim.dynamixel_chain import DynamixelChainEmulator

        self._emulator = DynamixelChainEmulator.for_arm(self.config)
        port = self._emulator.start()
        log.warning("%s: --dry-run, servo-chain emulator on %s", self.config.name, port)
        # the emulator shares this process (and its GIL) with the loop: give it slack a real bus does not need
        return replace(self.config, port=port, timeout_s=max(self.config.timeout_s, 0.05), bus_watchdog_s=2.0)

    def _make_arm(self, config: Any) -> Any:
        from edgeact.firmware_bridge.dynamixel.arm import DynamixelArm

        return DynamixelArm(config)


def make_widowx(
    config: str = "widowx",
    port: str | None = None,
    camera: str | None = None,
    dry_run: bool = False,
    **overrides: Any,
) -> WidowXRobot:
    """rt-run factory: `config` is a name under configs/robots or a YAML path; flags override it."""
    try:
        cfg = load_robot_config(config, port=port, **overrides)
    except BridgeError as err:
        raise RobotError(str(err)) from err
    if not isinstance(cfg, DynamixelArmConfig):
        raise RobotError(f"robot config {config} describes a {type(cfg).__name__}, not a Dynamixel arm")
    return WidowXRobot(cfg, camera_configs(cfg, camera, dry_run), dry_run=dry_run)
