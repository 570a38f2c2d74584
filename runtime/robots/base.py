"""The Robot interface every `rt-run` robot implements (docs/design.md, "Runtime boundaries").

A robot is what the runtime talks to: `observe()` hands out the newest camera frames and joint state without
blocking the control tick, `command(action)` sends joint targets (after the robot's own limits),
`safe_stop(reason)` brings the hardware to a safe state. Simulated robots (`SimRobot`) add `reset(seed)` and
per-episode results.

Real arms (Dynamixel, CANopen), their `--dry-run` emulations and `pusht-sim` all implement this shape, so that
`rt-run` and the C++ loop never know which one they drive. Nothing here imports torch.
"""

from __future__ import annotations

import abc
import logging
import math
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


class RobotError(Exception):
    """Base of the errors raised by robots (connection, bad observation, wrong state)."""


class RobotNotConnectedError(RobotError):
    """A robot method that needs the connection was called before `connect()` or after `disconnect()`."""


class RobotStoppedError(RobotError):
    """A command was sent after `safe_stop()`; the robot must be reset or reconnected first."""


class UnknownRobotError(RobotError, KeyError):
    """`--robot NAME` names no registered robot."""


@dataclass(frozen=True)
class CameraSpec:
    """One camera as the robot delivers it: the name is the feature key after `observation.images.`."""

    name: str
    height: int
    width: int
    channels: int = 3

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"CameraSpec.name must be a non-empty name without '/', got {self.name!r}")
        for fld in ("height", "width"):
            value = getattr(self, fld)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"CameraSpec.{fld} must be a positive int, got {value!r} (camera {self.name})"
                )
        if self.channels != 3:
            raise ValueError(
                f"CameraSpec.channels must be 3 (RGB), got {self.channels!r} (camera {self.name})"
            )


@dataclass(frozen=True)
class RobotSpec:
    """What a robot observes and accepts: checked against a policy's sidecar before the loop starts."""

    name: str
    fps: float
    cameras: tuple[CameraSpec, ...]
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None
    # Float vector inputs besides `observation.state`, by feature key (e.g. `observation.environment_state`)
    # -> element names, in order; delivered in `Observation.vectors`.
    vectors: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Largest change of each action per control tick (robot units; inf: none), None: no step limit. The
    # runtime's post-processor clamps to it and to action_low/high: the one clamp (docs/rt-run.md).
    action_max_step: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"RobotSpec.fps must be a positive number, got {self.fps!r} (robot {self.name})")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"RobotSpec.cameras has duplicate names {names} (robot {self.name})")
        if not self.action_names:
            raise ValueError(f"RobotSpec.action_names must not be empty (robot {self.name})")
        for fld in ("action_low", "action_high"):
            bound = getattr(self, fld)
            if bound is not None and len(bound) != len(self.action_names):
                raise ValueError(
                    f"RobotSpec.{fld} has {len(bound)} values for {len(self.action_names)} actions "
                    f"(robot {self.name})"
                )
        keys = [k for k, _ in self.vectors]
        if len(set(keys)) != len(keys) or "observation.state" in keys or any(not n for _, n in self.vectors):
            raise ValueError(
                f"RobotSpec.vectors must name distinct features other than observation.state, each with "
                f"element names; got {[(k, len(n)) for k, n in self.vectors]} (robot {self.name})"
            )
        if self.action_low is not None and self.action_high is not None:
            pairs = zip(self.action_names, self.action_low, self.action_high, strict=True)
            bad = [n for n, lo, hi in pairs if lo > hi]
            if bad:
                raise ValueError(f"RobotSpec.action_low exceeds action_high for {bad} (robot {self.name})")
        if self.action_max_step is not None:
            steps = self.action_max_step
            if len(steps) != len(self.action_names) or not all(s > 0 for s in steps):
                raise ValueError(
                    f"RobotSpec.action_max_step must hold {len(self.action_names)} positive values, got "
                    f"{steps!r} (robot {self.name})"
                )

    @property
    def vector_dims(self) -> dict[str, int]:
        """Feature key -> length of each float vector input besides `observation.state`."""
        return {key: len(names) for key, names in self.vectors}

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def camera(self, name: str) -> CameraSpec:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(f"robot {self.name} has no camera {name!r} (cameras: {list(self.camera_names)})")


@dataclass
class Observation:
    """The newest sensor data: never waited for inside the tick.

    images: camera name -> uint8 (H, W, 3) RGB; state: float32 (S,) in robot units; timestamp: seconds on
    the robot's clock (time.monotonic() for real robots, simulated time for simulations); image_timestamps:
    when each camera's frame was captured, on the same clock, so that a stale camera can be detected.
    """

    images: dict[str, np.ndarray]
    state: np.ndarray
    timestamp: float
    image_timestamps: dict[str, float] = field(default_factory=dict)
    # Float vector inputs besides `state`, by feature key (RobotSpec.vectors): float32 (D,) each.
    vectors: dict[str, np.ndarray] = field(default_factory=dict)

    def validate(self, spec: RobotSpec) -> None:
        """Raise RobotError naming the camera or field when this observation does not fit `spec`."""
        for cam in spec.cameras:
            img = self.images.get(cam.name)
            if img is None:
                raise RobotError(f"observation from {spec.name} lacks camera {cam.name!r}")
            want = (cam.height, cam.width, cam.channels)
            if img.dtype != np.uint8 or img.shape != want:
                raise RobotError(
                    f"camera {cam.name!r} of {spec.name} gave {img.dtype} {img.shape}, expected uint8 {want}"
                )
        if self.state.shape != (len(spec.state_names),) or self.state.dtype != np.float32:
            raise RobotError(
                f"state of {spec.name} is {self.state.dtype} {self.state.shape}, "
                f"expected float32 ({len(spec.state_names)},)"
            )
        if not np.all(np.isfinite(self.state)):
            raise RobotError(f"state of {spec.name} holds NaN or Inf: {self.state.tolist()}")
        for key, dim in spec.vector_dims.items():
            vec = self.vectors.get(key)
            if vec is None:
                raise RobotError(f"observation from {spec.name} lacks {key!r}")
            if vec.shape != (dim,) or vec.dtype != np.float32:
                raise RobotError(
                    f"{key} of {spec.name} is {vec.dtype} {vec.shape}, expected float32 ({dim},)"
                )
            if not np.all(np.isfinite(vec)):
                raise RobotError(f"{key} of {spec.name} holds NaN or Inf: {vec.tolist()}")


@dataclass(frozen=True)
class EpisodeResult:
    """The outcome of one simulated episode (PushT's definitions: edgeact.runtime.robots.pusht_sim)."""

    seed: int | None
    steps: int
    success: bool
    max_reward: float
    sum_reward: float
    extra: dict[str, float] = field(default_factory=dict)


class Robot(abc.ABC):
    """One robot behind `rt-run`. Methods are called from the control thread unless noted."""

    @property
    @abc.abstractmethod
    def spec(self) -> RobotSpec:
        """Cameras, state and action names, rate and limits; available before `connect()`."""

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    @abc.abstractmethod
    def connect(self) -> None:
        """Open devices (bus, cameras), arm watchdogs. Raises RobotError naming the device on failure."""

    @abc.abstractmethod
    def observe(self) -> Observation:
        """The newest frames and state; returns at once (never waits for a camera or the bus)."""

    @abc.abstractmethod
    def command(self, action: np.ndarray) -> np.ndarray:
        """Send joint targets float32 (A,) in robot units; returns what was sent after the robot's limits."""

    def command_ticks(self, action: np.ndarray, ticks: int) -> np.ndarray:
        """`command(action)` for a command `ticks` control ticks after the last one sent (the real-time loop
        skips commands the host did not collect in time): a robot that checks the per-tick step limit allows
        `ticks` steps. Defaults to `command(action)`."""
        del ticks
        return self.command(action)

    @abc.abstractmethod
    def safe_stop(self, reason: str) -> None:
        """Stop moving (hold, or torque off, as the hardware requires) and log `reason`; idempotent."""

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Release every device; safe to call twice."""

    def clip_action(self, action: np.ndarray) -> np.ndarray:
        """Apply the spec's joint limits: float32 (A,). Raises RobotError on a wrong shape or NaN."""
        spec = self.spec
        act = np.asarray(action, dtype=np.float32).reshape(-1)
        if act.shape != (len(spec.action_names),):
            raise RobotError(
                f"{spec.name} takes {len(spec.action_names)} actions, got shape {np.shape(action)}"
            )
        if not np.all(np.isfinite(act)):
            raise RobotError(f"{spec.name} refused a command holding NaN or Inf: {act.tolist()}")
        if spec.action_low is not None:
            act = np.maximum(act, np.asarray(spec.action_low, dtype=np.float32))
        if spec.action_high is not None:
            act = np.minimum(act, np.asarray(spec.action_high, dtype=np.float32))
        return act

    def __enter__(self) -> Robot:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()


class SimRobot(Robot):
    """A simulated robot: time advances one control tick per `command()`; episodes have results."""

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> Observation:
        """Start a new episode (seeded) and return its first observation."""

    @property
    @abc.abstractmethod
    def episode_done(self) -> bool:
        """True once the episode ended (success or time limit); further commands raise RobotStoppedError."""

    @abc.abstractmethod
    def episode_result(self) -> EpisodeResult:
        """The result of the current (or just finished) episode."""

    def render(self) -> np.ndarray:
        """A larger uint8 (H, W, 3) view for people (video); defaults to the first camera."""
        obs = self.observe()
        return obs.images[self.spec.cameras[0].name]
