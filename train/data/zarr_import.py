"""Import a diffusion-policy replay buffer (zarr, e.g. `pusht_cchi_v7_replay.zarr`) into a LeRobot v3.0
dataset.

The replay buffer holds `data/img` (N, H, W, 3) float 0..255, `data/state` (N, >=2), `data/action` (N, A) and
`meta/episode_ends` (E,). PushT's LeRobot version (`lerobot/pusht`) keeps `state[:, :2]` (the agent x, y) as
`observation.state` and the action unchanged; this importer does the same, so both give identical columns.
Frames are encoded to mp4 with PyAV; the import is atomic (temporary folder, then rename).

`observation="keypoints"` writes LeRobot's `lerobot/pusht_keypoints` layout instead: no camera,
`observation.state` = agent x, y, and `observation.environment_state` = the 16 numbers gym-pusht's
`environment_state_agent_pos` observation gives (the 8 vertices of the T's two rectangles, flattened x0, y0,
x1, y1, ...), computed with gym-pusht's own `add_tee`/`get_keypoints` from the recorded block pose
`state[:, 2:5]` (x, y, angle). The T is posed angle first, as `edgeact.runtime.robots.pusht_sim.reset_pusht`
does, so the values are what the env shows for that pose. The zarr's own `data/keypoint` array is a different
set: 9 fixed points on the block (its local coordinates are constant to 2.2 px over the whole file), moved by
the same rigid transform, so it cannot stand in for the env's observation (docs/datasets.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .errors import DatasetError, DatasetFormatError, DatasetNotFoundError
from .video import VideoSettings
from .writer import LeRobotWriter

log = logging.getLogger(__name__)

PUSHT_TASK = "Push the T-shaped block onto the T-shaped target."
OBSERVATIONS = ("image", "keypoints")
ENV_STATE = "observation.environment_state"
PUSHT_KEYPOINT_DIM = 16  # 8 (x, y) vertices


def pusht_block_keypoints(block_pose: np.ndarray) -> np.ndarray:
    """(N, 16) float32 env-state keypoints for block poses (N, 3) [x, y, angle], by gym-pusht's own geometry.

    Raises DatasetError naming the install hint when gym-pusht is missing.
    """
    try:
        import pymunk
        from gym_pusht.envs.pusht import PushTEnv
    except ImportError as err:
        raise DatasetError(
            "the PushT keypoint import computes the block's keypoints with gym-pusht: "
            "pip install 'edgeact[sim]'"
        ) from err
    pose = np.asarray(block_pose, dtype=np.float64).reshape(-1, 3)
    body, shapes = PushTEnv.add_tee(pymunk.Space(), (256, 300), 0)
    out = np.empty((len(pose), PUSHT_KEYPOINT_DIM), dtype=np.float32)
    for i, (x, y, angle) in enumerate(pose):
        body.angle = float(angle)  # angle first, then position (see reset_pusht)
        body.position = (float(x), float(y))
        out[i] = PushTEnv.get_keypoints(shapes).reshape(-1)
    return out


def import_diffusion_policy_zarr(
    zarr_path: str | Path,
    out_root: str | Path,
    *,
    fps: int = 10,
    state_dims: int = 2,
    task: str = PUSHT_TASK,
    robot_type: str = "2d pointer",
    video: VideoSettings | None = None,
    overwrite: bool = False,
    progress: bool = True,
    max_episodes: int | None = None,
    observation: str = "image",
) -> Path:
    """Convert the replay buffer at `zarr_path` into a LeRobot v3.0 dataset at `out_root` (returned).

    `observation`: "image" (lerobot/pusht: camera + agent state) or "keypoints" (lerobot/pusht_keypoints:
    block keypoints as `observation.environment_state` + agent state, no camera).
    """
    if observation not in OBSERVATIONS:
        raise ValueError(f"observation={observation!r}: must be one of {OBSERVATIONS}")
    keypoints = observation == "keypoints"
    zarr_path = Path(zarr_path)
    img, state, action, ends = _open_replay_buffer(zarr_path, state_dims)
    features = _features(img.shape[1], img.shape[2], state_dims, action.shape[1])
    if keypoints:
        if state.shape[1] < 5:
            raise DatasetFormatError(
                f"{zarr_path}: data/state has {state.shape[1]} columns; the keypoint import needs the block "
                "pose in columns 2..4 (x, y, angle)"
            )
        del features["observation.image"]
        features[ENV_STATE] = {
            "dtype": "float32",
            "shape": [PUSHT_KEYPOINT_DIM],
            "names": [f"keypoint_{i // 2}_{'xy'[i % 2]}" for i in range(PUSHT_KEYPOINT_DIM)],
        }
    starts = np.concatenate([[0], ends[:-1]])
    count = len(ends) if max_episodes is None else min(max_episodes, len(ends))
    bar = _bar(int(ends[count - 1]), f"import {zarr_path.name}", progress)
    extra = {
        "edgeact_source": {
            "format": "diffusion_policy_zarr",
            "path": zarr_path.name,
            "observation": observation,
        }
    }
    with LeRobotWriter(
        out_root,
        fps=fps,
        features=features,
        robot_type=robot_type,
        video=video,
        overwrite=overwrite,
        extra_info=extra,
    ) as writer:
        for ep in range(count):
            a, b = int(starts[ep]), int(ends[ep])
            columns = {
                "observation.state": np.asarray(state[a:b, :state_dims], dtype=np.float32),
                "action": np.asarray(action[a:b], dtype=np.float32),
            }
            if keypoints:
                columns[ENV_STATE] = pusht_block_keypoints(np.asarray(state[a:b, 2:5]))  # (T, 16)
            else:
                frames = np.asarray(img[a:b])  # (T, H, W, 3) float 0..255
                if frames.dtype != np.uint8:
                    frames = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
                columns["observation.image"] = frames
            writer.add_episode(columns, task=task)
            bar.update(b - a)
    bar.close()
    log.info("imported %d episodes from %s into %s", count, zarr_path, out_root)
    return Path(out_root)


def _open_replay_buffer(zarr_path: Path, state_dims: int):
    """(img, state, action, episode_ends) of a replay buffer, checked for consistent lengths and shapes."""
    import zarr

    if not zarr_path.is_dir():
        raise DatasetNotFoundError(f"{zarr_path}: zarr replay buffer not found")
    try:
        group = zarr.open_group(str(zarr_path), mode="r")
        img, state, action = group["data/img"], group["data/state"], group["data/action"]
        ends = np.asarray(group["meta/episode_ends"][:], dtype=np.int64)
    except Exception as err:  # zarr raises KeyError, FileNotFoundError or its own errors depending on version
        raise DatasetFormatError(f"{zarr_path}: not a diffusion-policy replay buffer ({err})") from err
    n = img.shape[0]
    if state.shape[0] != n or action.shape[0] != n:
        raise DatasetFormatError(f"{zarr_path}: data/img, data/state and data/action lengths differ")
    if len(ends) == 0 or ends[-1] != n or np.any(np.diff(np.concatenate([[0], ends])) <= 0):
        raise DatasetFormatError(f"{zarr_path}: meta/episode_ends must increase and end at {n}")
    if state.shape[1] < state_dims or img.ndim != 4 or img.shape[-1] != 3:
        raise DatasetFormatError(f"{zarr_path}: unexpected shapes img {img.shape}, state {state.shape}")
    return img, state, action, ends


def _features(h: int, w: int, state_dims: int, action_dims: int) -> dict:
    # PushT's LeRobot dataset names both vectors {"motors": ["motor_0", "motor_1"]}; we write the same
    # names so that a policy trained on the import fits robots configured for lerobot/pusht.
    xy = state_dims == 2 and action_dims == 2
    motors = {"motors": ["motor_0", "motor_1"]}
    return {
        "observation.image": {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channel"]},
        "observation.state": {
            "dtype": "float32",
            "shape": [state_dims],
            "names": motors if xy else [f"state_{i}" for i in range(state_dims)],
        },
        "action": {
            "dtype": "float32",
            "shape": [action_dims],
            "names": motors if xy else [f"action_{i}" for i in range(action_dims)],
        },
    }


def _bar(total: int, desc: str, enabled: bool):
    from .frame_cache import _progress

    return _progress(total, desc, enabled)
