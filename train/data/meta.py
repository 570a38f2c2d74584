"""Dataset metadata in memory: what `LeRobotDataset.meta` holds, read from a LeRobot v3.0 folder.

Normalises what real datasets vary on: `names` given as a dict (`{"motors": [...]}`) becomes a list, image
shapes
declared channel-first become (H, W, C), the `info`/`video_info` key of video features is accepted under
either
name, and stats become flat per-dimension (images: per-channel, 0..1 units) lists.
"""

from __future__ import annotations

import json
import math
import string
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from . import stats as st
from .deviations import Deviations
from .errors import DatasetFormatError, DatasetNotFoundError

CAMERA_DTYPES = ("video", "image")


@dataclass
class VideoRef:
    """Where an episode's frames of one camera live: an mp4 file and the time span inside it (seconds)."""

    path: Path
    from_timestamp: float
    to_timestamp: float


@dataclass
class EpisodeInfo:
    """One episode: its rows are the global frame indices [from_frame, to_frame)."""

    index: int
    length: int
    from_frame: int
    to_frame: int
    tasks: list[str] = field(default_factory=list)
    videos: dict[str, VideoRef] = field(default_factory=dict)


@dataclass
class DatasetMeta:
    root: Path
    version: str
    fps: int
    features: dict[str, dict]
    stats: dict[str, dict[str, list]]
    camera_keys: list[str]
    episodes: list[EpisodeInfo]
    tasks: dict[int, str]
    robot_type: str
    info: dict
    data_files: list[Path]

    @property
    def total_frames(self) -> int:
        return sum(e.length for e in self.episodes)

    @property
    def total_episodes(self) -> int:
        return len(self.episodes)

    def names(self, key: str) -> list[str] | None:
        return self.features[key].get("names")


# LeRobot v3.0's own templates, used when info.json leaves `data_path`/`video_path` out.
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: missing")
    try:
        text = path.read_text()
    except OSError as err:  # permissions, an unreadable mount
        raise DatasetFormatError(
            f"{path}: cannot read ({err.strerror or err}); check the file's permissions"
        ) from err
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetFormatError(f"{path}: not valid JSON: {err}") from err


def path_template(info: dict, field_name: str, default: str, info_path: Path, dev: Deviations) -> str:
    """`data_path`/`video_path` of info.json; LeRobot's default for the version when it is left out."""
    value = info.get(field_name)
    if value is None:
        dev.note(f"info.json has no {field_name!r}; LeRobot's default {default!r} is used", 1, str(info_path))
        return default
    if not isinstance(value, str) or not value:
        raise DatasetFormatError(f"{info_path}: field {field_name!r} must be a path template, got {value!r}")
    return value


def format_path(template: str, field_name: str, info_path: Path, values: dict) -> str:
    """Fill a path template; a variable the reader cannot supply is named with the ones it can."""
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as err:
        used = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        unknown = [n for n in used if n not in values] or [str(err)]
        raise DatasetFormatError(
            f"{info_path}: field {field_name!r} = {template!r} uses {{{unknown[0]}}}, which this reader "
            f"cannot fill (it knows {', '.join('{' + k + '}' for k in values)}); fix the template"
        ) from err


def require_features(info: dict, info_path: Path) -> dict:
    raw = info.get("features")
    if not isinstance(raw, dict) or not raw:
        raise DatasetFormatError(
            f"{info_path}: no 'features' (every LeRobot dataset declares its columns there, with dtype, "
            "shape and names); add them or re-export the dataset with LeRobot"
        )
    return raw


def check_declared_widths(features: dict, columns: dict, files: list[Path], info_path: Path) -> None:
    """A vector column must hold as many values per row as its declared shape says (issue 12)."""
    for key, values in columns.items():
        feat = features.get(key)
        if feat is None or feat.get("dtype") in CAMERA_DTYPES or feat.get("dtype") == "string":
            continue
        declared = math.prod(feat["shape"]) if feat["shape"] else 1
        width = math.prod(values.shape[1:]) if values.ndim > 1 else 1
        if width != declared:
            where = files[0] if len(files) == 1 else f"{files[0].parent}/..."
            raise DatasetFormatError(
                f"{info_path}: feature {key!r} is declared with shape {feat['shape']}, but the data "
                f"({where}) holds {width} values per row; fix 'shape' in info.json"
            )


def read_parquet(path: Path, columns: list[str] | None = None):
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: missing")
    try:
        return pq.read_table(path, columns=columns)
    except Exception as err:  # pyarrow raises ArrowInvalid/OSError subclasses for truncated or foreign files
        raise DatasetFormatError(f"{path}: cannot read parquet: {err}") from err


def normalise_names(names, key: str) -> list[str] | None:
    """LeRobot allows names as a list or as a dict of lists ({"motors": [...]}); we keep one flat list."""
    if names is None or isinstance(names, list):
        return names
    if isinstance(names, dict):
        flat: list[str] = []
        for value in names.values():
            flat.extend(value if isinstance(value, list) else [value])
        return [str(n) for n in flat]
    raise DatasetFormatError(
        f"feature {key!r}: names must be a list or a dict of lists, got {type(names).__name__}"
    )


def normalise_features(raw: dict, source: str, dev: Deviations) -> dict[str, dict]:
    features = {}
    for key, spec in raw.items():
        if "dtype" not in spec or "shape" not in spec:
            raise DatasetFormatError(f"{source}: feature {key!r} lacks dtype or shape")
        feat = dict(spec)
        feat["shape"] = [int(s) for s in spec["shape"]]
        feat["names"] = normalise_names(spec.get("names"), key)
        if "video_info" in feat and "info" not in feat:
            feat["info"] = feat.pop("video_info")
            dev.note("'video_info' read as 'info' (LeRobot v2.0's name)", 1, key)
        if spec["dtype"] in CAMERA_DTYPES:
            shape, names = feat["shape"], feat["names"] or []
            channel_first = (names[:1] in (["channel"], ["channels"])) or (
                shape[0] in (1, 3) and shape[2] > 4
            )
            if len(shape) == 3 and channel_first:
                feat["shape"] = [shape[1], shape[2], shape[0]]
                feat["names"] = ["height", "width", "channel"]
                dev.note("image shape declared channel-first, read as (H, W, C)", 1, key)
        features[key] = feat
    return features


def normalise_stats(raw: dict) -> dict[str, dict[str, list]]:
    return {key: st.from_json(entry) for key, entry in raw.items() if isinstance(entry, dict)}


def load_meta_v3(root: Path, dev: Deviations) -> DatasetMeta:
    info_path = root / "meta" / "info.json"
    info = read_json(info_path)
    fps = info.get("fps")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or fps <= 0:
        raise DatasetFormatError(f"{info_path}: fps must be a positive number, got {fps!r}")
    features = normalise_features(require_features(info, info_path), str(info_path), dev)
    camera_keys = [k for k, f in features.items() if f["dtype"] in CAMERA_DTYPES]
    stats_path = root / "meta" / "stats.json"
    stats = normalise_stats(read_json(stats_path)) if stats_path.exists() else {}
    tasks = _read_tasks_v3(root / "meta" / "tasks.parquet")
    info = {
        **info,
        "data_path": path_template(info, "data_path", V3_DATA_PATH, info_path, dev),
        "video_path": path_template(info, "video_path", V3_VIDEO_PATH, info_path, dev)
        if any(features[k]["dtype"] == "video" for k in camera_keys)
        else info.get("video_path"),
    }
    episodes, data_files = _read_episodes_v3(root, info, camera_keys, features)
    return DatasetMeta(
        root=root,
        version=info.get("codebase_version", "v3.0"),
        fps=round(fps),
        features=features,
        stats=stats,
        camera_keys=camera_keys,
        episodes=episodes,
        tasks=tasks,
        robot_type=info.get("robot_type") or "unknown",
        info=info,
        data_files=data_files,
    )


def _read_tasks_v3(path: Path) -> dict[int, str]:
    if not path.exists():
        return {}
    table = read_parquet(path).to_pydict()
    text = table.get("task") or table.get("__index_level_0__")
    if text is None or "task_index" not in table:
        raise DatasetFormatError(f"{path}: needs columns task_index and task (or a pandas index of tasks)")
    return {int(i): str(t) for i, t in zip(table["task_index"], text, strict=False)}


def _read_episodes_v3(root: Path, info: dict, cameras: list[str], features: dict):
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DatasetNotFoundError(f"{root / 'meta' / 'episodes'}: no episode metadata files")
    rows: list[dict] = []
    for path in files:
        columns = [c for c in read_parquet(path).schema.names if not c.startswith("stats/")]
        rows.extend(read_parquet(path, columns).to_pylist())
    rows.sort(key=lambda r: r["episode_index"])
    data_tpl, video_tpl = info.get("data_path"), info.get("video_path")
    info_path = root / "meta" / "info.json"
    episodes, data_files = [], []
    for r in rows:
        ep = int(r["episode_index"])
        try:
            start, stop = int(r["dataset_from_index"]), int(r["dataset_to_index"])
            chunk, file = r["data/chunk_index"], r["data/file_index"]
        except (KeyError, TypeError, AttributeError) as err:
            raise DatasetFormatError(f"{files[0].parent}: episode {ep}: missing or bad column {err}") from err
        data_file = root / format_path(
            data_tpl, "data_path", info_path, {"chunk_index": chunk, "file_index": file}
        )
        if data_file not in data_files:
            data_files.append(data_file)
        length = int(r.get("length", stop - start))
        if length != stop - start:
            raise DatasetFormatError(
                f"{files[0].parent}: episode {ep}: column 'length' = {length} but dataset_to_index - "
                f"dataset_from_index = {stop - start}"
            )
        videos = {}
        for key in cameras:
            if features[key]["dtype"] != "video":
                continue
            try:
                where = {
                    "chunk_index": r[f"videos/{key}/chunk_index"],
                    "file_index": r[f"videos/{key}/file_index"],
                }
            except KeyError as err:
                raise DatasetFormatError(f"{files[0].parent}: episode {ep}: missing column {err}") from err
            path = root / format_path(video_tpl, "video_path", info_path, {"video_key": key, **where})
            videos[key] = VideoRef(
                path, float(r[f"videos/{key}/from_timestamp"]), float(r[f"videos/{key}/to_timestamp"])
            )
        episodes.append(EpisodeInfo(ep, length, start, stop, list(r.get("tasks") or []), videos))
    return episodes, data_files
