"""Small synthetic LeRobot v3.0 datasets for tests and examples (any cameras, state and action sizes).

Frames are smooth gradients with a moving bright square, which lossy codecs reproduce closely, so tests can
compare
decoded frames with the originals. Everything is deterministic in `seed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .video import VideoSettings
from .writer import LeRobotWriter


def synthetic_episode(
    episode: int,
    length: int,
    *,
    cameras: Sequence[str] = ("observation.image",),
    image_hw: tuple[int, int] = (64, 64),
    state_dim: int = 2,
    action_dim: int = 2,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The arrays of one synthetic episode: cameras uint8 (T, H, W, 3), state (T, S) and action (T, A)
    float32."""
    rng = np.random.default_rng([seed, episode])
    h, w = image_hw
    out: dict[str, np.ndarray] = {}
    if state_dim:
        walk = np.cumsum(rng.normal(0.0, 1.0, size=(length, state_dim)), axis=0)
        out["observation.state"] = (100.0 + 10.0 * walk).astype(np.float32)  # (T, S)
    # Action t is a distinct, recognisable value: 1000 * episode + t in the first dimension.
    action = rng.normal(0.0, 1.0, size=(length, action_dim)).astype(np.float32)  # (T, A)
    action[:, 0] = 1000.0 * episode + np.arange(length)
    out["action"] = action
    yy, xx = np.mgrid[0:h, 0:w]
    for c, key in enumerate(cameras):
        frames = np.empty((length, h, w, 3), dtype=np.uint8)
        for t in range(length):
            base = np.stack(
                [(xx * 255) // max(w - 1, 1), (yy * 255) // max(h - 1, 1), np.full_like(xx, 40 * c)], -1
            )
            y0 = (t * 3 + 7 * episode) % max(h - h // 4, 1)
            x0 = (t * 2 + 5 * c) % max(w - w // 4, 1)
            base[y0 : y0 + h // 4, x0 : x0 + w // 4] = 255
            frames[t] = base.astype(np.uint8)
        out[key] = frames
    return out


def synthetic_features(
    cameras: Sequence[str], image_hw: tuple[int, int], state_dim: int, action_dim: int
) -> dict[str, dict]:
    feats: dict[str, dict] = {
        key: {"dtype": "video", "shape": [*image_hw, 3], "names": ["height", "width", "channel"]}
        for key in cameras
    }
    if state_dim:
        feats["observation.state"] = {
            "dtype": "float32",
            "shape": [state_dim],
            "names": [f"state_{i}" for i in range(state_dim)],
        }
    feats["action"] = {
        "dtype": "float32",
        "shape": [action_dim],
        "names": [f"joint_{i}" for i in range(action_dim)],
    }
    return feats


def make_synthetic_dataset(
    root: str | Path,
    *,
    episodes: int = 3,
    length: int | Sequence[int] = 30,
    cameras: Sequence[str] = ("observation.image",),
    image_hw: tuple[int, int] = (64, 64),
    state_dim: int = 2,
    action_dim: int = 2,
    fps: int = 10,
    seed: int = 0,
    video: VideoSettings | None = None,
    task: str = "synthetic task",
) -> Path:
    """Write a synthetic LeRobot v3.0 dataset at `root` and return `root`.

    `length` is one length for every episode or one per episode. `cameras=()` gives a state-only dataset,
    `state_dim=0` a dataset without `observation.state`.
    """
    lengths = [length] * episodes if isinstance(length, int) else list(length)
    if len(lengths) != episodes:
        raise ValueError(f"length: need {episodes} values, got {len(lengths)}")
    features = synthetic_features(cameras, image_hw, state_dim, action_dim)
    with LeRobotWriter(root, fps=fps, features=features, video=video, robot_type="synthetic") as writer:
        for ep, n in enumerate(lengths):
            arrays = synthetic_episode(
                ep,
                n,
                cameras=cameras,
                image_hw=image_hw,
                state_dim=state_dim,
                action_dim=action_dim,
                seed=seed,
            )
            writer.add_episode(arrays, task=task)
    return Path(root)
