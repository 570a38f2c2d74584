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
import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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


class NameMapError(RobotError, ValueError):
    """A name map leaves a policy name without a robot name, or maps two onto one; the message names them."""


def _resolve_names(
    kind: str, policy: Sequence[str], robot: Sequence[str], name_map: Mapping[str, str], spec_name: str
) -> list[int]:
    """Index into `robot` of each of the policy's names, through `name_map`; NameMapError by name when one
    has no robot name or two share one."""
    out, used = [], {}
    for name in policy:
        target = name_map.get(name, name)
        if target not in robot:
            hint = f"add {name}=<one of {list(robot)}> to --map or the robot YAML's name_map"
            raise NameMapError(
                f"policy {kind} {name!r} is unmapped: robot {spec_name} has no {kind} {target!r} ({hint})"
            )
        if target in used:
            raise NameMapError(
                f"ambiguous name map: policy {kind}s {used[target]!r} and {name!r} both map to robot {kind} "
                f"{target!r} of {spec_name}"
            )
        used[target] = name
        out.append(list(robot).index(target))
    return out


class NameMappedRobot(Robot):
    """`robot` seen through the policy's names (docs/rt-run.md, "Names that differ"): cameras renamed, state
    and action reordered into the policy's order, limits with them. `name_map` maps policy names to the
    robot's; a name without an entry must be the robot's own."""

    def __init__(
        self,
        robot: Robot,
        name_map: Mapping[str, str],
        *,
        cameras: Sequence[str],
        state_names: Sequence[str],
        action_names: Sequence[str],
    ) -> None:
        self.robot, self.name_map = robot, dict(name_map)
        spec = robot.spec
        known = set(cameras) | set(state_names) | set(action_names)
        unknown = sorted(set(name_map) - known)
        if unknown:
            raise NameMapError(
                f"name map entries {unknown} are no camera, state or action name of the policy "
                f"(its names: {sorted(known)})"
            )
        cam_idx = _resolve_names("camera", cameras, spec.camera_names, name_map, spec.name)
        self._cams = [(p, spec.cameras[i].name) for p, i in zip(cameras, cam_idx, strict=True)]
        self._act = np.asarray(_resolve_names("action", action_names, spec.action_names, name_map, spec.name))
        if len(self._act) != len(spec.action_names):
            missing = sorted(set(spec.action_names) - {spec.action_names[i] for i in self._act})
            raise NameMapError(f"robot {spec.name} actions {missing} are commanded by no policy action")
        self._inv = np.argsort(self._act)
        self._state = None
        if state_names:
            idx = _resolve_names("state", state_names, spec.state_names, name_map, spec.name)
            self._state = np.asarray(idx)
        mapped = {r: p for p, r in self._cams}
        self._spec = RobotSpec(
            name=spec.name,
            fps=spec.fps,
            cameras=tuple(
                CameraSpec(mapped.get(c.name, c.name), c.height, c.width, c.channels) for c in spec.cameras
            ),
            state_names=tuple(state_names) if state_names else spec.state_names,
            action_names=tuple(action_names),
            action_low=None if spec.action_low is None else tuple(spec.action_low[i] for i in self._act),
            action_high=None if spec.action_high is None else tuple(spec.action_high[i] for i in self._act),
            vectors=spec.vectors,
            action_max_step=None
            if spec.action_max_step is None
            else tuple(spec.action_max_step[i] for i in self._act),
        )

    @property
    def spec(self) -> RobotSpec:
        return self._spec

    @property
    def is_connected(self) -> bool:
        return self.robot.is_connected

    def connect(self) -> None:
        self.robot.connect()
        # a bus arm learns some limits at bring-up (a drive's 0x607F): take them over in the policy's order
        steps = self.robot.spec.action_max_step
        if steps is not None:
            self._spec = dataclasses.replace(self._spec, action_max_step=tuple(steps[i] for i in self._act))

    def observe(self) -> Observation:
        obs = self.robot.observe()
        images = {p: obs.images[r] for p, r in self._cams if r in obs.images}
        stamps = {p: obs.image_timestamps[r] for p, r in self._cams if r in obs.image_timestamps}
        state = obs.state if self._state is None else obs.state[self._state]
        return Observation(images, state, obs.timestamp, stamps, obs.vectors)

    def command(self, action: np.ndarray) -> np.ndarray:
        return self.command_ticks(action, 1)

    def command_ticks(self, action: np.ndarray, ticks: int) -> np.ndarray:
        act = np.asarray(action, dtype=np.float32).reshape(-1)
        if act.shape != self._act.shape:
            raise RobotError(
                f"{self._spec.name} takes {self._act.size} actions, got shape {np.shape(action)}"
            )
        sent = self.robot.command_ticks(act[self._inv], ticks)
        return np.asarray(sent)[self._act]

    def safe_stop(self, reason: str) -> None:
        self.robot.safe_stop(reason)

    def disconnect(self) -> None:
        self.robot.disconnect()

    @property
    def stop_record(self) -> Any:
        return getattr(self.robot, "stop_record", None)


def parse_name_map(text: str) -> dict[str, str]:
    """`joint_0=waist,top=cam_high` -> {"joint_0": "waist", "top": "cam_high"}; NameMapError on a bad part."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise NameMapError(f"--map takes POLICY_NAME=ROBOT_NAME[,...], got {part!r}")
        key, value = key.strip(), value.strip()
        if out.get(key, value) != value:
            raise NameMapError(f"ambiguous name map: {key!r} maps to both {out[key]!r} and {value!r}")
        out[key] = value
    return out
