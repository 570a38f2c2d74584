"""`pusht-sim`: gym-pusht as a robot behind the Robot interface, plus the PushT metrics and env construction.

This is the one definition of the PushT simulation used by `rt-run --robot pusht-sim` and by `eval-act`
(docs/design.md: the training side imports this torch-free module rather than re-implementing it):

- `make_pusht_env()`: `gym_pusht/PushT-v0`, obs_type `pixels_agent_pos`, render_mode `rgb_array`, headless,
  10 Hz control, at most 300 steps (gym-pusht's `PushTEnv`: `control_hz`, and LeRobot's PushT env config).
- `reset_pusht(env, seed=..., state=...)`: seeded reset, or reset to a recorded state
  `[agent_x, agent_y, block_x, block_y, block_angle]` with the block's angle set BEFORE its position.
  gym-pusht sets position first (kept for old data), which rotates the T about its centre of mass and
  misplaces it by up to ~90 px for the recorded zarr states; angle first reproduces the recorded pose exactly
  (docs/datasets.md, tests/runtime/test_robots_pusht_sim.py).
- `coverage_to_reward`, `is_success`, `pusht_metrics`: success when coverage > 0.95, reward =
  clip(coverage / 0.95, 0, 1), average max overlap = mean over episodes of the per-episode maximum reward.
- `PushTSim`: a `SimRobot`; one `command()` advances the simulation by one 0.1 s tick. It observes either
  the camera (`observation="pixels"`, gym-pusht's `pixels_agent_pos`) or the block's keypoints
  (`observation="keypoints"`, gym-pusht's `environment_state_agent_pos`: `observation.environment_state` =
  the 8 vertices of the T, 16 numbers), with the same env, reset and metrics.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from edgeact.runtime.robots.base import (
    CameraSpec,
    EpisodeResult,
    Observation,
    RobotError,
    RobotNotConnectedError,
    RobotSpec,
    RobotStoppedError,
    SimRobot,
)

log = logging.getLogger(__name__)

PUSHT_ENV_ID = "gym_pusht/PushT-v0"
CONTROL_HZ = 10  # gym-pusht's control rate (metadata render_fps)
MAX_EPISODE_STEPS = 300
SUCCESS_COVERAGE = 0.95  # gym-pusht's `success_threshold`: success when coverage > 0.95
ACTION_LOW, ACTION_HIGH = 0.0, 512.0  # action Box(0, 512, (2,)): the agent's target position in pixels
# LeRobot's `lerobot/pusht` feature names (meta/info.json): state = agent x, y; action = target x, y.
PUSHT_STATE_NAMES = ("motor_0", "motor_1")
PUSHT_ACTION_NAMES = ("motor_0", "motor_1")
PUSHT_CAMERA = "image"  # feature `observation.image`
ENV_STATE = "observation.environment_state"
# gym-pusht's get_keypoints order: the 4 vertices of the bar, then the 4 of the stem, (x, y) each.
PUSHT_KEYPOINT_NAMES = tuple(f"keypoint_{i // 2}_{'xy'[i % 2]}" for i in range(16))
OBSERVATIONS = {"pixels": "pixels_agent_pos", "keypoints": "environment_state_agent_pos"}


def observation_for_inputs(*, has_camera: bool, has_env_state: bool) -> str:
    """The PushT observation that serves a policy's inputs: the block keypoints for a policy without camera
    that takes `observation.environment_state`, else the camera (rt-run and eval-act both choose so)."""
    return "keypoints" if not has_camera and has_env_state else "pixels"


class SimulationUnavailableError(RobotError):
    """gym-pusht (the `sim` extra) is not installed."""


def coverage_to_reward(coverage: float) -> float:
    """PushT reward: clip(coverage / 0.95, 0, 1), as gym-pusht's `PushTEnv.step` computes it."""
    return float(np.clip(coverage / SUCCESS_COVERAGE, 0.0, 1.0))


def is_success(coverage: float) -> bool:
    """PushT success: the T covers more than 95 % of the target."""
    return bool(coverage > SUCCESS_COVERAGE)


@dataclass(frozen=True)
class PushTMetrics:
    """The two numbers PushT results are reported with (Diffusion Policy, Chi et al. 2023; LeRobot)."""

    n_episodes: int
    success_rate: float  # fraction of episodes in which coverage exceeded 0.95
    avg_max_overlap: float  # mean over episodes of the per-episode maximum reward

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_episodes": self.n_episodes,
            "success_rate": self.success_rate,
            "avg_max_overlap": self.avg_max_overlap,
        }


def pusht_metrics(episodes: Sequence[EpisodeResult]) -> PushTMetrics:
    """Success rate and average max overlap over finished episodes."""
    if not episodes:
        raise ValueError("pusht_metrics needs at least one episode, got none")
    successes = np.array([ep.success for ep in episodes], dtype=np.float64)
    max_rewards = np.array([ep.max_reward for ep in episodes], dtype=np.float64)
    return PushTMetrics(
        n_episodes=len(episodes),
        success_rate=float(successes.mean()),
        avg_max_overlap=float(max_rewards.mean()),
    )


def _import_gym() -> tuple[Any, Any]:
    # Headless: pygame draws into off-screen surfaces only; no display or audio device is opened.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import gym_pusht  # registers gym_pusht/PushT-v0
        import gymnasium as gym
    except ImportError as err:
        raise SimulationUnavailableError(
            "pusht-sim needs gym-pusht: pip install 'edgeact[sim]' (gymnasium, gym-pusht)"
        ) from err
    return gym, gym_pusht


def make_pusht_env(
    *,
    max_episode_steps: int = MAX_EPISODE_STEPS,
    observation_size: int = 96,
    visualization_size: int = 680,
    observation: str = "pixels",
) -> Any:
    """The PushT env every edgeact evaluation uses: pixels (or keypoints) + agent_pos, rgb_array, headless."""
    if max_episode_steps <= 0:
        raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps}")
    if observation not in OBSERVATIONS:
        raise ValueError(f"observation={observation!r}: must be one of {sorted(OBSERVATIONS)}")
    gym, _ = _import_gym()
    return gym.make(
        PUSHT_ENV_ID,
        obs_type=OBSERVATIONS[observation],
        render_mode="rgb_array",
        max_episode_steps=max_episode_steps,
        observation_width=observation_size,
        observation_height=observation_size,
        visualization_width=visualization_size,
        visualization_height=visualization_size,
    )


def reset_pusht(
    env: Any,
    *,
    seed: int | None = None,
    state: Sequence[float] | np.ndarray | None = None,
    angle_first: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Reset `env` (from `make_pusht_env`); with `state`, place agent and block there (angle first)."""
    if state is None:
        return env.reset(seed=seed)
    st = np.asarray(state, dtype=np.float64).reshape(-1)
    if st.shape != (5,) or not np.all(np.isfinite(st)):
        raise ValueError(
            f"reset state must be 5 finite numbers [ax, ay, bx, by, angle], got {np.asarray(state)}"
        )
    obs, info = env.reset(seed=seed, options={"reset_to_state": st})
    if not angle_first:
        return obs, info
    sim = env.unwrapped
    sim._setup()  # a fresh space, as reset does, then the pose with the angle set before the position
    sim.agent.position = st[:2].tolist()
    sim.block.angle = float(st[4])
    sim.block.position = st[2:4].tolist()
    sim.space.step(sim.dt)  # as gym-pusht's own _set_state: one physics step to let the pose take effect
    obs = sim.get_obs()
    info = sim._get_info()
    info["is_success"] = False
    return obs, info


class PushTSim(SimRobot):
    """gym-pusht as a robot: camera `image` 96x96 (or the block keypoints), state = agent (x, y), action =
    target (x, y) in pixels."""

    def __init__(
        self,
        *,
        max_episode_steps: int = MAX_EPISODE_STEPS,
        angle_first: bool = True,
        observation: str = "pixels",
    ) -> None:
        if observation not in OBSERVATIONS:
            raise ValueError(f"pusht-sim observation={observation!r}: must be one of {sorted(OBSERVATIONS)}")
        keypoints = observation == "keypoints"
        self._spec = RobotSpec(
            name="pusht-sim",
            fps=float(CONTROL_HZ),
            cameras=() if keypoints else (CameraSpec(PUSHT_CAMERA, 96, 96),),
            state_names=PUSHT_STATE_NAMES,
            action_names=PUSHT_ACTION_NAMES,
            action_low=(ACTION_LOW, ACTION_LOW),
            action_high=(ACTION_HIGH, ACTION_HIGH),
            vectors=((ENV_STATE, PUSHT_KEYPOINT_NAMES),) if keypoints else (),
        )
        self.observation = observation
        self._max_steps = max_episode_steps
        self._angle_first = angle_first
        self._env: Any = None
        self._obs: Observation | None = None
        self._reset_episode(None)

    def _reset_episode(self, seed: int | None) -> None:
        self._seed = seed
        self._steps = 0
        self._rewards: list[float] = []
        self._max_coverage = 0.0
        self._done = False
        self.stop_reason: str | None = None

    @property
    def spec(self) -> RobotSpec:
        return self._spec

    @property
    def is_connected(self) -> bool:
        return self._env is not None

    @property
    def env(self) -> Any:
        """The underlying gymnasium env (for evaluation code that needs more than the Robot interface)."""
        self._need_env()
        return self._env

    def connect(self) -> None:
        if self._env is None:
            self._env = make_pusht_env(max_episode_steps=self._max_steps, observation=self.observation)

    def disconnect(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
            self._obs = None

    def _need_env(self) -> None:
        if self._env is None:
            raise RobotNotConnectedError("pusht-sim is not connected: call connect() first")

    def _to_observation(self, raw: dict[str, np.ndarray]) -> Observation:
        t = self._steps / CONTROL_HZ  # simulated time
        state = np.asarray(raw["agent_pos"], dtype=np.float32)  # (2,)
        if "environment_state" in raw:
            keypoints = np.asarray(raw["environment_state"], dtype=np.float32)  # (16,)
            return Observation(images={}, state=state, timestamp=t, vectors={ENV_STATE: keypoints})
        return Observation(
            images={PUSHT_CAMERA: raw["pixels"]},  # (96, 96, 3) uint8
            state=state,
            timestamp=t,
            image_timestamps={PUSHT_CAMERA: t},
        )

    def reset(self, seed: int | None = None, *, state: Sequence[float] | None = None) -> Observation:
        """New episode from `seed`, or from a recorded `state` [ax, ay, bx, by, angle] (angle first)."""
        self._need_env()
        self._reset_episode(seed)
        raw, _ = reset_pusht(self._env, seed=seed, state=state, angle_first=self._angle_first)
        self._obs = self._to_observation(raw)
        return self._obs

    def observe(self) -> Observation:
        self._need_env()
        if self._obs is None:
            raise RobotError("pusht-sim has no observation yet: call reset(seed) to start an episode")
        return self._obs

    def command(self, action: np.ndarray) -> np.ndarray:
        self._need_env()
        if self._obs is None:
            raise RobotError("pusht-sim: call reset(seed) before command()")
        if self._done:
            raise RobotStoppedError(
                f"pusht-sim episode already ended after {self._steps} steps"
                + (f" (safe stop: {self.stop_reason})" if self.stop_reason else "")
            )
        act = self.clip_action(action)
        raw, _, terminated, truncated, info = self._env.step(act)
        self._steps += 1
        coverage = float(info["coverage"])
        self._rewards.append(coverage_to_reward(coverage))
        self._max_coverage = max(self._max_coverage, coverage)
        self._done = bool(terminated or truncated)
        self._obs = self._to_observation(raw)
        return act

    def safe_stop(self, reason: str) -> None:
        if not self._done:
            log.warning("pusht-sim safe stop after %d steps: %s", self._steps, reason)
        self.stop_reason = self.stop_reason or reason
        self._done = True

    @property
    def episode_done(self) -> bool:
        return self._done

    def episode_result(self) -> EpisodeResult:
        return EpisodeResult(
            seed=self._seed,
            steps=self._steps,
            success=is_success(self._max_coverage),
            max_reward=max(self._rewards, default=0.0),
            sum_reward=float(sum(self._rewards)),
            extra={"max_coverage": self._max_coverage},
        )

    def render(self) -> np.ndarray:
        """The 680x680 view with the commanded target drawn (for videos)."""
        self._need_env()
        return self._env.render()


def make_pusht_sim(**options: Any) -> PushTSim:
    """Registry factory for `--robot pusht-sim`."""
    return PushTSim(**options)
