"""LeRobot v2.1 metadata: one parquet and one mp4 per episode, JSON-lines episode/task/stats files.

Layout: `meta/info.json` (`data_path` and `video_path` templates with `episode_chunk`,
`episode_index`, `video_key`), `meta/episodes.jsonl`, `meta/tasks.jsonl`, and
`meta/episodes_stats.jsonl` (v2.1) or `meta/stats.json` (v2.0). Read into the same `DatasetMeta` as v3.0,
each episode's video starting at time 0 of its own file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import stats as st
from .deviations import Deviations
from .errors import DatasetFormatError, DatasetNotFoundError
from .meta import (
    CAMERA_DTYPES,
    DatasetMeta,
    EpisodeInfo,
    VideoRef,
    format_path,
    normalise_features,
    normalise_stats,
    path_template,
    read_json,
    require_features,
)

DEFAULT_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
DEFAULT_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: missing")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise DatasetFormatError(f"{path}: line {n} is not valid JSON: {err}") from err
    return rows


def load_meta_v21(root: Path, dev: Deviations) -> DatasetMeta:
    info_path = root / "meta" / "info.json"
    info = read_json(info_path)
    fps = info.get("fps")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or fps <= 0:
        raise DatasetFormatError(f"{info_path}: fps must be a positive number, got {fps!r}")
    features = normalise_features(require_features(info, info_path), str(info_path), dev)
    camera_keys = [k for k, f in features.items() if f["dtype"] in CAMERA_DTYPES]
    chunks_size = info.get("chunks_size", 1000)
    if not isinstance(chunks_size, int) or isinstance(chunks_size, bool) or chunks_size < 1:
        raise DatasetFormatError(f"{info_path}: chunks_size must be an integer >= 1, got {chunks_size!r}")
    data_tpl = path_template(info, "data_path", DEFAULT_DATA_PATH, info_path, dev)
    video_tpl = path_template(info, "video_path", DEFAULT_VIDEO_PATH, info_path, dev)
    for name, tpl in (("data_path", data_tpl), ("video_path", video_tpl)):
        if "{chunk_index" in tpl:  # community datasets written with v3.0's variable name
            dev.note(
                f"{name} names the episode chunk {{chunk_index}} (LeRobot v2.1: {{episode_chunk}})", 1, tpl
            )
    rows = sorted(read_jsonl(root / "meta" / "episodes.jsonl"), key=lambda r: r["episode_index"])
    episodes, data_files, start = [], [], 0
    for r in rows:
        try:
            ep, length = int(r["episode_index"]), int(r["length"])
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetFormatError(
                f"{root / 'meta' / 'episodes.jsonl'}: bad episode entry {r}: {err}"
            ) from err
        chunk = ep // chunks_size
        where = {"episode_chunk": chunk, "chunk_index": chunk, "episode_index": ep}
        data_files.append(root / format_path(data_tpl, "data_path", info_path, where))
        videos = {
            key: VideoRef(
                root / format_path(video_tpl, "video_path", info_path, {**where, "video_key": key}),
                0.0,
                length / fps,
            )
            for key in camera_keys
            if features[key]["dtype"] == "video"
        }
        episodes.append(EpisodeInfo(ep, length, start, start + length, list(r.get("tasks") or []), videos))
        start += length
    tasks_path = root / "meta" / "tasks.jsonl"
    tasks = (
        {int(t["task_index"]): str(t["task"]) for t in read_jsonl(tasks_path)} if tasks_path.exists() else {}
    )
    return DatasetMeta(
        root=root,
        version=str(info.get("codebase_version")),
        fps=round(fps),
        features=features,
        stats=_stats_v21(root, features),
        camera_keys=camera_keys,
        episodes=episodes,
        tasks=tasks,
        robot_type=info.get("robot_type") or "unknown",
        info=info,
        data_files=data_files,
    )


def _stats_v21(root: Path, features: dict) -> dict:
    """v2.1 keeps per-episode stats only; aggregate them like v3.0's stats.json. v2.0 has meta/stats.json."""
    per_episode = root / "meta" / "episodes_stats.jsonl"
    if not per_episode.exists():
        path = root / "meta" / "stats.json"
        return normalise_stats(read_json(path)) if path.exists() else {}
    entries = [r["stats"] for r in read_jsonl(per_episode)]
    out = {}
    for key in features:
        parts = [
            {s: np.asarray(e[key][s], dtype=np.float64).reshape(-1) for s in st.STAT_KEYS}
            for e in entries
            if key in e
        ]
        if parts and len(parts) == len(entries):
            out[key] = {k: v.tolist() for k, v in st.aggregate(parts).items()}
    return out
