"""Closed-loop evaluation of a trained ACT policy in the PushT simulation.

Nothing here re-implements the shared pieces: the environment, the reset and the metrics (success when
coverage > 0.95, average max overlap) come from `edgeact.runtime.robots.pusht_sim`, and how chunks become one
action per tick (`ensemble` / `chunk`) from `edgeact.runtime.ensemble_ref`: the definitions the runtime uses
on the robot.

    policy, doc = load_policy("outputs/train")
    cams = doc["dataset"]["camera_keys"]
    result = evaluate_policy(policy, EvalConfig(episodes=50, seed=0), camera_keys=cams)
    result.summary()  # {"success_rate": ..., "avg_max_overlap": ..., ...}
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgeact.runtime.ensemble_ref import ActionExecutor, ExecutionConfig
from edgeact.runtime.robots.base import EpisodeResult, Observation
from edgeact.runtime.robots.pusht_sim import (
    CONTROL_HZ,
    ENV_STATE,
    PushTMetrics,
    PushTSim,
    observation_for_inputs,
    pusht_metrics,
)
from edgeact.train.features import camera_name
from edgeact.train.train_config import EvalConfig, TrainError

log = logging.getLogger(__name__)


class EvalError(TrainError):
    """The policy does not fit the evaluation environment (cameras, state or action size, fps)."""


@dataclass
class EvalResult:
    metrics: PushTMetrics
    episodes: list[EpisodeResult]
    execution: dict[str, Any]
    wall_s: float
    videos: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            **self.metrics.as_dict(),
            "mean_steps": float(np.mean([e.steps for e in self.episodes])),
            "wall_s": self.wall_s,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "execution": self.execution,
            "episodes": [
                {"seed": e.seed, "steps": e.steps, "success": e.success, "max_reward": e.max_reward}
                for e in self.episodes
            ],
            "videos": self.videos,
        }


def execution_config(policy_cfg: Any, eval_cfg: EvalConfig, action_dim: int) -> ExecutionConfig:
    """The eval's execution settings, falling back to the policy's own (ACTConfig) for unset fields."""
    mode = eval_cfg.mode or policy_cfg.execution_mode
    m = eval_cfg.temporal_ensemble_coeff
    n = eval_cfg.n_action_steps
    if n is None and mode == "chunk":
        n = min(policy_cfg.n_action_steps, policy_cfg.chunk_size)
    try:
        return ExecutionConfig(
            chunk_size=policy_cfg.chunk_size,
            action_dim=action_dim,
            mode=mode,
            temporal_ensemble_coeff=policy_cfg.temporal_ensemble_coeff if m is None else m,
            n_action_steps=n,
        )
    except ValueError as err:
        raise EvalError(f"eval: {err}") from err


class _PolicyInfer:
    """Turns a robot observation into the policy's `predict_chunk` inputs and returns the chunk (k, A)."""

    def __init__(self, policy: torch.nn.Module, camera_keys: list[str], device: torch.device) -> None:
        self.policy = policy
        self.keys = {camera_name(k): k for k in camera_keys}
        self.device = device

    def __call__(self, obs: Observation) -> np.ndarray:
        images = {}
        for cam, key in self.keys.items():
            if cam not in obs.images:
                raise EvalError(f"the policy needs camera {cam!r}; the environment has {sorted(obs.images)}")
            hwc = torch.from_numpy(np.ascontiguousarray(obs.images[cam]))
            want = tuple(self.policy.io.image_shapes[key])  # (C, H, W) the policy was trained at
            got = (hwc.shape[2], hwc.shape[0], hwc.shape[1])
            if got != want:
                raise EvalError(
                    f"camera {cam!r}: the environment gives {got[1]}x{got[2]}x{got[0]} frames, the policy "
                    f"was trained on {want[1]}x{want[2]}x{want[0]}"
                )
            images[key] = hwc.permute(2, 0, 1).unsqueeze(0).to(self.device)  # (1, 3, H, W) uint8
        state = (
            torch.from_numpy(np.asarray(obs.state, dtype=np.float32)).unsqueeze(0).to(self.device)
        )  # (1, S)
        extra = []  # the environment state, for policies that take it
        if self.policy.io.env_state_dim is not None:
            if ENV_STATE not in obs.vectors:
                raise EvalError(
                    f"the policy needs {ENV_STATE!r}; the environment gives {sorted(obs.vectors)}"
                )
            extra.append(torch.from_numpy(obs.vectors[ENV_STATE]).unsqueeze(0).to(self.device))  # (1, 16)
        with torch.inference_mode():
            chunk = self.policy.predict_chunk(images, state, *extra)  # (1, k, A)
        return chunk[0].float().cpu().numpy()


def evaluate_policy(
    policy: torch.nn.Module,
    cfg: EvalConfig,
    *,
    camera_keys: list[str] | None = None,
    fps: float | None = None,
    device: str | torch.device | None = None,
) -> EvalResult:
    """Run `cfg.episodes` closed-loop PushT episodes (seeds cfg.seed, cfg.seed+1, ...) and score them."""
    if fps is not None and abs(float(fps) - CONTROL_HZ) > 1e-6:
        raise EvalError(f"the policy was trained at {fps} fps; PushT runs at {CONTROL_HZ} Hz")
    device = torch.device(device) if device is not None else next(policy.parameters()).device
    if camera_keys is None:
        camera_keys = list(policy.image_keys)
    action_dim = int(_action_dim(policy))
    exec_cfg = execution_config(policy.config, cfg, action_dim)
    executor = ActionExecutor(exec_cfg)
    infer = _PolicyInfer(policy, camera_keys, device)
    video_dir = Path(cfg.video_dir) if cfg.video_dir else None
    mode = observation_for_inputs(
        has_camera=bool(policy.io.image_shapes), has_env_state=policy.io.env_state_dim is not None
    )
    robot = PushTSim(max_episode_steps=cfg.max_steps, observation=mode)
    robot.connect()
    was_training = policy.training
    policy.eval()
    episodes, videos = [], []
    t0 = time.perf_counter()
    try:
        for ep in range(cfg.episodes):
            record = video_dir is not None and ep < cfg.video_episodes
            result, frames = _episode(robot, executor, infer, cfg.seed + ep, record)
            episodes.append(result)
            log.info("episode %d (seed %d): success=%s max_reward=%.3f steps=%d", ep, result.seed,
                     result.success, result.max_reward, result.steps)  # fmt: skip
            if record:
                videos.append(str(write_mp4(frames, video_dir / f"episode_{ep:03d}_seed{cfg.seed + ep}.mp4")))
    finally:
        robot.disconnect()
        policy.train(was_training)
    exec_dict = {
        "mode": exec_cfg.mode,
        "temporal_ensemble_coeff": exec_cfg.temporal_ensemble_coeff,
        "n_action_steps": exec_cfg.n_action_steps,
    }
    return EvalResult(pusht_metrics(episodes), episodes, exec_dict, time.perf_counter() - t0, videos)


def _action_dim(policy: torch.nn.Module) -> int:
    io = getattr(policy, "io", None)
    if io is None:
        raise EvalError("the policy does not say its action dimension (policy.io.action_dim)")
    return int(io.action_dim)


def _episode(
    robot: PushTSim, executor: ActionExecutor, infer: _PolicyInfer, seed: int, record: bool
) -> tuple[EpisodeResult, list[np.ndarray]]:
    obs = robot.reset(seed=seed)
    executor.reset()
    frames = [robot.render()] if record else []
    last = np.asarray(obs.state, dtype=np.float32)  # before the first chunk: hold the agent where it is
    while not robot.episode_done:
        action = executor.step(lambda o=obs: infer(o))  # (A,) or None: hold the last command
        last = last if action is None else action
        robot.command(last)
        obs = robot.observe()
        if record:
            frames.append(robot.render())
    return robot.episode_result(), frames


def write_mp4(frames: list[np.ndarray], path: Path, fps: int = CONTROL_HZ) -> Path:
    """Encode RGB frames (H, W, 3) uint8 as H.264 mp4 with PyAV, written to a temp file then renamed."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    h, w = frames[0].shape[:2]
    try:
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream(
                "libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps
            )
            stream.width, stream.height = w - w % 2, h - h % 2
            stream.pix_fmt = "yuv420p"
            for frame in frames:
                img = np.ascontiguousarray(frame[: stream.height, : stream.width])
                container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            container.mux(stream.encode(None))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
