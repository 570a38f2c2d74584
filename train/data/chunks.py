"""Training samples: the observation at frame t and the action chunk t .. t+k-1 of the same episode.

Past the episode end the chunk repeats the last action and `action_is_pad` is True there. Optional observation
history comes from `delta_timestamps` (LeRobot's convention: seconds relative to t, e.g.
`{"observation.image":
[-0.1, 0.0]}`); frames before the episode start repeat the first frame and `<key>_is_pad` marks them. Delta
timestamps must fall on whole frames within the dataset's timestamp tolerance.

`get_batch(indices)` is the fast path: vectorised gathers from in-memory columns and the memory-mapped frame
cache. The training loop owns shuffling and calls it with sample indices. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import DatasetError
from .reader import LeRobotDataset

OBS_PREFIX = "observation."


class ChunkDataset:
    """Samples of `dataset` for ACT: see the module docstring. Sample i is the i-th frame of the chosen
    episodes."""

    def __init__(
        self,
        dataset: LeRobotDataset,
        chunk_size: int,
        *,
        episodes: Sequence[int] | None = None,
        delta_timestamps: dict[str, Sequence[float]] | None = None,
        frame_cache: bool = True,
        cache_dir=None,
        progress: bool = True,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if "action" not in dataset.columns:
            raise DatasetError(f"{dataset.root}: no 'action' column")
        self.dataset, self.chunk_size = dataset, chunk_size
        meta = dataset.meta
        known = {e.index: e for e in meta.episodes}
        chosen = list(known) if episodes is None else list(episodes)
        unknown = [e for e in chosen if e not in known]
        if unknown:
            raise DatasetError(f"{dataset.root}: episodes {unknown} do not exist (have 0..{len(known) - 1})")
        self.episodes = chosen
        spans = [(known[e].from_frame, known[e].to_frame) for e in chosen]
        # Per sample: its global row, and the first/one-past-last row of its episode.  (N,) each
        self._rows = np.concatenate([np.arange(a, b) for a, b in spans]).astype(np.int64)
        self._ep_start = np.concatenate([np.full(b - a, a) for a, b in spans]).astype(np.int64)
        self._ep_end = np.concatenate([np.full(b - a, b) for a, b in spans]).astype(np.int64)
        self.camera_keys = list(meta.camera_keys)
        self.vector_keys = [k for k in dataset.columns if k.startswith(OBS_PREFIX)]
        self._offsets = self._frame_offsets(delta_timestamps or {})
        self._action = dataset.column("action").reshape(len(dataset), -1)  # (N, A)
        self._vectors = {k: dataset.column(k).reshape(len(dataset), -1) for k in self.vector_keys}
        self._ids = {
            k: dataset.column(k).reshape(-1).astype(np.int64)
            for k in ("index", "episode_index", "frame_index")
        }
        self._frames: dict[str, np.ndarray] | None = None
        if frame_cache and self.camera_keys:
            from .frame_cache import open_frame_cache

            self._frames = open_frame_cache(dataset, cache_dir=cache_dir, progress=progress)

    def _frame_offsets(self, delta_timestamps: dict[str, Sequence[float]]) -> dict[str, np.ndarray]:
        fps, tol = self.dataset.meta.fps, max(self.dataset.tolerance_s, 1e-6)
        out = {}
        for key, deltas in delta_timestamps.items():
            if key == "action":
                raise DatasetError(
                    "delta_timestamps: the action window is set by chunk_size, not by 'action'"
                )
            if key not in self.camera_keys and key not in self.vector_keys:
                raise DatasetError(f"delta_timestamps: unknown feature {key!r}")
            d = np.asarray(deltas, dtype=np.float64) * fps
            if len(d) == 0 or np.abs(d - np.round(d)).max() > tol * fps:
                raise DatasetError(
                    f"delta_timestamps[{key!r}] = {list(deltas)}: not whole frames at {fps} fps"
                )
            if (d > 0).any():
                raise DatasetError(f"delta_timestamps[{key!r}]: observations from the future are not allowed")
            out[key] = np.round(d).astype(np.int64)
        return out

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        """One sample: the batch layout of `get_batch` without the leading batch dimension."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        return {k: v[0] for k, v in self.get_batch(np.array([i % n])).items()}

    def get_batch(self, indices) -> dict[str, np.ndarray]:
        """A batch of samples by index: images uint8 (B, 3, H, W) (history: (B, T, 3, H, W)), `observation.*`
        float32 (B, D), `action` float32 (B, k, A), `action_is_pad` bool (B, k), ids int64 (B,)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"sample indices must be in 0..{len(self) - 1}")
        rows, start, end = self._rows[idx], self._ep_start[idx], self._ep_end[idx]  # (B,)
        steps = rows[:, None] + np.arange(self.chunk_size)[None, :]  # (B, k)
        pad = steps >= end[:, None]
        batch: dict[str, np.ndarray] = {
            "action": self._action[np.minimum(steps, end[:, None] - 1)].astype(np.float32),  # (B, k, A)
            "action_is_pad": pad,
        }
        for key in self.vector_keys:
            batch.update(
                self._gather(key, rows, start, lambda r, k=key: self._vectors[k][r].astype(np.float32))
            )
        for key in self.camera_keys:
            batch.update(self._gather(key, rows, start, lambda r, k=key: self._images(k, r)))
        for key, ids in self._ids.items():
            batch[key] = ids[rows]
        return batch

    def _gather(self, key: str, rows: np.ndarray, start: np.ndarray, fetch) -> dict[str, np.ndarray]:
        offsets = self._offsets.get(key)
        if offsets is None:
            return {key: fetch(rows)}
        want = rows[:, None] + offsets[None, :]  # (B, T)
        is_pad = want < start[:, None]
        values = fetch(np.maximum(want, start[:, None]).reshape(-1))  # (B*T, ...)
        return {key: values.reshape(*want.shape, *values.shape[1:]), f"{key}_is_pad": is_pad}

    def _images(self, key: str, rows: np.ndarray) -> np.ndarray:
        """uint8 (n, 3, H, W) channel-first, from the frame cache or by decoding."""
        if self._frames is not None:
            order = np.argsort(rows, kind="stable")  # ascending rows read the memmap front to back
            hwc = np.empty((len(rows), *self._frames[key].shape[1:]), dtype=np.uint8)
            hwc[order] = self._frames[key][rows[order]]
        else:
            hwc = self.dataset.read_frames(key, rows)
        return np.ascontiguousarray(hwc.transpose(0, 3, 1, 2))  # (n, 3, H, W)
