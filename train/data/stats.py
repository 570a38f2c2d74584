"""Per-episode and dataset statistics in LeRobot's format (min, max, mean, std, count).

Vectors get one value per dimension (population std, as numpy and LeRobot compute it). Camera images get one
value per channel in 0..1 units (pixel / 255), stored on disk with LeRobot's (C, 1, 1) nesting; image
statistics
are exact, computed from a per-channel histogram of every pixel rather than from a sample of frames.
"""

from __future__ import annotations

import numpy as np

STAT_KEYS = ("min", "max", "mean", "std", "count")


def vector_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Stats over axis 0 of a (T,) or (T, D) array, each of shape (D,): mean and std float64 (bool counts as
    0/1), min and max in the column's own kind (float64, int64 or bool) as LeRobot stores them."""
    raw = np.asarray(values)
    raw = raw.reshape(len(raw), -1)  # (T, D)
    kind = np.bool_ if raw.dtype == np.bool_ else np.int64 if raw.dtype.kind in "iu" else np.float64
    x = raw.astype(np.float64)
    return {
        "min": raw.min(axis=0).astype(kind),
        "max": raw.max(axis=0).astype(kind),
        "mean": x.mean(axis=0),
        "std": x.std(axis=0),
        "count": np.array([len(x)], dtype=np.int64),
    }


def image_histogram(frames: np.ndarray) -> np.ndarray:
    """Per-channel histogram of uint8 frames (T, H, W, C) -> int64 (C, 256). One channel at a time keeps the
    temporary at one uint8 plane (large camera episodes run to gigabytes)."""
    c = frames.shape[-1]
    return np.stack([np.bincount(frames[..., i].ravel(), minlength=256) for i in range(c)]).astype(np.int64)


def histogram_stats(hist: np.ndarray, frames: int) -> dict[str, np.ndarray]:
    """Stats in 0..1 units from a per-channel histogram (C, 256); `count` is the number of frames like
    LeRobot."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    n = hist.sum(axis=1).astype(np.float64)  # (C,)
    mean = (hist * levels).sum(axis=1) / n
    var = (hist * levels**2).sum(axis=1) / n - mean**2
    nonzero = hist > 0
    return {
        "min": np.array([levels[np.argmax(row)] for row in nonzero]),
        "max": np.array([levels[255 - np.argmax(row[::-1])] for row in nonzero]),
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
        "count": np.array([frames], dtype=np.int64),
    }


def aggregate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Combine per-episode stats: count-weighted mean, pooled variance (within + between episodes)."""
    counts = np.array([float(p["count"][0]) for p in parts])  # (E,)
    w = counts / counts.sum()
    means = np.stack([p["mean"] for p in parts])  # (E, D)
    variances = np.stack([p["std"] ** 2 for p in parts])
    mean = (w[:, None] * means).sum(axis=0)
    var = (w[:, None] * (variances + (means - mean) ** 2)).sum(axis=0)
    return {
        "min": np.stack([p["min"] for p in parts]).min(axis=0),
        "max": np.stack([p["max"] for p in parts]).max(axis=0),
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
        "count": np.array([int(counts.sum())], dtype=np.int64),
    }


def to_json(stats: dict[str, np.ndarray], *, image: bool) -> dict[str, list]:
    """On-disk form: lists, images nested (C, 1, 1) like LeRobot's stats.json."""
    out = {}
    for key in STAT_KEYS:
        arr = np.asarray(stats[key])
        if image and key != "count":
            arr = arr.reshape(-1, 1, 1)
        out[key] = arr.tolist()
    return out


def from_json(entry: dict) -> dict[str, list]:
    """Normalised in-memory form: flat lists (images: one value per channel); quantiles and extras kept flat
    too."""
    return {key: np.asarray(value, dtype=np.float64).reshape(-1).tolist() for key, value in entry.items()}
