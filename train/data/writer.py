"""LeRobot v3.0 dataset writer: parquet data files, mp4 camera streams, episodes/tasks/stats/info metadata.

Torch-free (numpy + pyarrow + av) so that the runtime can record rollouts with it. Usage:

    with LeRobotWriter(root, fps=10, features={"observation.image": {"dtype": "video", "shape": [96, 96, 3]},
                                                "observation.state": {"dtype": "float32", "shape": [2]},
                                                "action": {"dtype": "float32", "shape": [2]}}) as w:
        w.add_episode({"observation.image": frames, "observation.state": s, "action": a}, task="push")
    # the dataset appears at `root` only when the block exits cleanly (written to a temporary folder, then
    # renamed)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import stats as st
from .errors import DatasetError, DatasetExistsError, DatasetFormatError
from .video import VideoEncoder, VideoSettings

log = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
# Columns every frame carries (LeRobot's standard set).
STANDARD_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
_NUMERIC = {"float32", "float64", "int64", "int32", "bool"}


class _Slot:
    """Where the next episode of one stream (data or a camera) goes: chunk/file indices and what is open
    there."""

    def __init__(self, chunks_size: int) -> None:
        self.chunk, self.file, self.chunks_size = 0, 0, chunks_size

    def advance(self) -> None:
        self.file += 1
        if self.file == self.chunks_size:
            self.chunk, self.file = self.chunk + 1, 0


def _check_features(features: dict) -> dict:
    out = {}
    for key, spec in features.items():
        if key in STANDARD_FEATURES:
            continue
        dtype, shape = spec.get("dtype"), spec.get("shape")
        if dtype not in _NUMERIC | {"video"} or not isinstance(shape, (list, tuple)):
            raise DatasetFormatError(
                f"feature {key!r}: need dtype in {sorted(_NUMERIC)} or video and a shape"
            )
        if dtype == "video" and (len(shape) != 3 or shape[2] != 3):
            raise DatasetFormatError(f"feature {key!r}: video shape must be [height, width, 3], got {shape}")
        names = spec.get("names")
        if names is None and dtype == "video":
            names = ["height", "width", "channel"]
        out[key] = {"dtype": dtype, "shape": list(shape), "names": names}
    return out


class LeRobotWriter:
    """Writes one LeRobot v3.0 dataset; see the module docstring. Not thread-safe."""

    def __init__(
        self,
        root: str | Path,
        *,
        fps: int,
        features: dict[str, dict],
        robot_type: str = "unknown",
        video: VideoSettings | None = None,
        chunks_size: int = 1000,
        data_file_size_mb: float = 100,
        video_file_size_mb: float = 500,
        overwrite: bool = False,
        extra_info: dict | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.root = Path(root)
        if self.root.is_dir() and any(self.root.iterdir()) and not overwrite:
            what = "a dataset" if (self.root / "meta" / "info.json").exists() else "a non-empty folder"
            raise DatasetExistsError(f"{self.root}: {what} already exists there (pass overwrite=True)")
        self.fps, self.robot_type, self.overwrite = fps, robot_type, overwrite
        self.features = _check_features(features)
        self.video_keys = [k for k, f in self.features.items() if f["dtype"] == "video"]
        self.video = video or VideoSettings()
        self.chunks_size = chunks_size
        self.data_limit, self.video_limit = data_file_size_mb * 2**20, video_file_size_mb * 2**20
        self.extra_info = extra_info or {}
        self.tmp = self.root.parent / f".{self.root.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir(parents=True)
        self.episodes: list[dict] = []
        self.tasks: dict[str, int] = {}
        self.total_frames = 0
        self._data_slot, self._data_rows, self._data_bytes = _Slot(chunks_size), [], 0
        self._video_slots = {k: _Slot(chunks_size) for k in self.video_keys}
        self._encoders: dict[str, VideoEncoder] = {}
        self._codec: str | None = None
        self._closed = False

    # -- episodes -------------------------------------------------------------------------------------------
    def add_episode(self, frames: dict[str, np.ndarray], task: str = "", timestamps=None) -> int:
        """Append one episode: every declared feature as an array with the same leading length T. Returns its
        index."""
        ep = len(self.episodes)
        arrays = self._validate(ep, frames)
        length = len(next(iter(arrays.values())))
        task_index = self.tasks.setdefault(task, len(self.tasks))
        ts = np.arange(length) / self.fps if timestamps is None else np.asarray(timestamps, np.float64)
        columns = {k: v for k, v in arrays.items() if k not in self.video_keys}
        columns["timestamp"] = ts.astype(np.float32)
        columns["frame_index"] = np.arange(length, dtype=np.int64)
        columns["episode_index"] = np.full(length, ep, dtype=np.int64)
        columns["index"] = np.arange(self.total_frames, self.total_frames + length, dtype=np.int64)
        columns["task_index"] = np.full(length, task_index, dtype=np.int64)
        record = {
            "episode_index": ep,
            "tasks": [task],
            "length": length,
            "data/chunk_index": self._data_slot.chunk,
            "data/file_index": self._data_slot.file,
            "dataset_from_index": self.total_frames,
            "dataset_to_index": self.total_frames + length,
        }
        for key in self.video_keys:
            record.update(self._write_video(key, arrays[key]))
        for key, values in columns.items():
            for stat, value in st.vector_stats(values).items():
                record[f"stats/{key}/{stat}"] = value.tolist()
        hists = {k: st.image_histogram(arrays[k]) for k in self.video_keys}  # (C, 256) each
        for key, hist in hists.items():
            for stat, value in st.to_json(st.histogram_stats(hist, length), image=True).items():
                record[f"stats/{key}/{stat}"] = value
        record["_hist"] = hists
        self.episodes.append(record)
        self._data_rows.append(columns)
        self._data_bytes += sum(v.nbytes for v in columns.values())
        self.total_frames += length
        if self._data_bytes >= self.data_limit:
            self._flush_data()
        return ep

    def _validate(self, ep: int, frames: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = sorted(set(self.features) - set(frames))
        extra = sorted(set(frames) - set(self.features))
        if missing or extra:
            raise DatasetFormatError(f"episode {ep}: missing features {missing}, undeclared features {extra}")
        lengths = {k: len(v) for k, v in frames.items()}
        if len(set(lengths.values())) != 1 or 0 in lengths.values():
            raise DatasetFormatError(f"episode {ep}: feature lengths disagree or are zero: {lengths}")
        out = {}
        for key, spec in self.features.items():
            arr = np.asarray(frames[key])
            want = tuple(spec["shape"])
            got = arr.shape[1:] if not (want == (1,) and arr.ndim == 1) else (1,)
            if got != want:
                raise DatasetFormatError(
                    f"episode {ep}, column {key!r}: shape {arr.shape[1:]} != declared {want}"
                )
            if spec["dtype"] == "video":
                if arr.dtype != np.uint8:
                    raise DatasetFormatError(
                        f"episode {ep}, column {key!r}: frames must be uint8, got {arr.dtype}"
                    )
            else:
                if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                    bad = int(np.argwhere(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))[0][0])
                    raise DatasetFormatError(f"episode {ep}, column {key!r}: NaN or inf at frame {bad}")
                arr = arr.astype(spec["dtype"]).reshape((len(arr), *want) if want != (1,) else (len(arr),))
            out[key] = arr
        return out

    def _write_video(self, key: str, frames: np.ndarray) -> dict:
        slot = self._video_slots[key]
        enc = self._encoders.get(key)
        if enc is None:
            path = self.tmp / VIDEO_PATH.format(video_key=key, chunk_index=slot.chunk, file_index=slot.file)
            h, w, _ = self.features[key]["shape"]
            enc = self._encoders[key] = VideoEncoder(
                path, fps=self.fps, height=h, width=w, settings=self.video
            )
            self._codec = enc.codec
        from_ts = enc.frames_written / self.fps
        enc.write(frames)
        record = {
            f"videos/{key}/chunk_index": slot.chunk,
            f"videos/{key}/file_index": slot.file,
            f"videos/{key}/from_timestamp": from_ts,
            # Frames are encoded at a constant 1/fps spacing whatever the timestamp column says.
            f"videos/{key}/to_timestamp": enc.frames_written / self.fps,
        }
        if enc.bytes_written >= self.video_limit:
            enc.close()
            del self._encoders[key]
            slot.advance()
        return record

    def _flush_data(self) -> None:
        if not self._data_rows:
            return
        cols = {k: np.concatenate([r[k] for r in self._data_rows]) for k in self._data_rows[0]}
        arrays, fields = [], []
        for key, values in cols.items():
            if values.ndim == 1:
                arr = pa.array(values)
            else:
                flat = pa.array(values.reshape(-1))
                arr = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(values.shape[1:])))
            arrays.append(arr)
            fields.append(pa.field(key, arr.type))
        path = self.tmp / DATA_PATH.format(chunk_index=self._data_slot.chunk, file_index=self._data_slot.file)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), path)
        self._data_rows, self._data_bytes = [], 0
        self._data_slot.advance()

    # -- finishing ------------------------------------------------------------------------------------------
    def finalize(self) -> Path:
        """Write the metadata and move the finished dataset into place atomically. Returns the dataset
        root."""
        if self._closed:
            raise DatasetError(f"{self.root}: writer already closed")
        if not self.episodes:
            raise DatasetError(f"{self.root}: no episodes were added")
        self._flush_data()
        for enc in self._encoders.values():
            enc.close()
        self._encoders.clear()
        self._write_meta()
        self._closed = True
        self._move_into_place()
        return self.root

    def abort(self) -> None:
        """Drop everything written so far; the destination is left untouched."""
        for enc in self._encoders.values():
            try:
                enc.close()
            except Exception:  # closing a half-written file may fail; it is deleted next anyway
                log.debug("closing %s during abort failed", enc.path, exc_info=True)
        self._encoders.clear()
        self._closed = True
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> LeRobotWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.abort()

    def _write_meta(self) -> None:
        meta = self.tmp / "meta"
        (meta / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
        hists = [r.pop("_hist") for r in self.episodes]
        for r in self.episodes:
            r["meta/episodes/chunk_index"], r["meta/episodes/file_index"] = 0, 0
        pq.write_table(pa.Table.from_pylist(self.episodes), self.tmp / EPISODES_PATH)
        pq.write_table(
            _tasks_table(self.tasks),
            meta / "tasks.parquet",
        )
        _write_json(meta / "stats.json", self._dataset_stats(hists))
        _write_json(meta / "info.json", self._info())

    def _dataset_stats(self, hists: list[dict[str, np.ndarray]]) -> dict:
        out = {}
        for key in [*self.features, *STANDARD_FEATURES]:
            if key in self.video_keys:
                total = sum(h[key] for h in hists)
                out[key] = st.to_json(st.histogram_stats(total, self.total_frames), image=True)
                continue
            parts = [{s: np.asarray(r[f"stats/{key}/{s}"]) for s in st.STAT_KEYS} for r in self.episodes]
            out[key] = st.to_json(st.aggregate(parts), image=False)
        return out

    def _info(self) -> dict:
        features = {}
        for key, spec in self.features.items():
            feat = dict(spec)
            if spec["dtype"] == "video":
                h, w, c = spec["shape"]
                feat["info"] = {
                    "video.height": h,
                    "video.width": w,
                    "video.codec": self._codec,
                    "video.pix_fmt": self.video.pix_fmt,
                    "video.is_depth_map": False,
                    "video.fps": float(self.fps),
                    "video.channels": c,
                    "has_audio": False,
                }
            features[key] = feat
        features.update({k: dict(v) for k, v in STANDARD_FEATURES.items()})
        for feat in features.values():
            if feat["dtype"] != "video":
                feat["fps"] = float(self.fps)
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self.episodes),
            "total_frames": self.total_frames,
            "total_tasks": len(self.tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": self.data_limit / 2**20,
            "video_files_size_in_mb": self.video_limit / 2**20,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self.episodes)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.video_keys else None,
            "features": features,
            **self.extra_info,
        }

    def _move_into_place(self) -> None:
        old = None
        if self.root.exists():
            if not self.overwrite and any(self.root.iterdir()):
                shutil.rmtree(self.tmp, ignore_errors=True)
                raise DatasetExistsError(f"{self.root}: destination appeared while writing and is not empty")
            old = self.root.parent / f".{self.root.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.root, old)
        os.replace(self.tmp, self.root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        log.info("wrote %d episodes, %d frames to %s", len(self.episodes), self.total_frames, self.root)


def _tasks_table(tasks: dict[str, int]) -> pa.Table:
    """LeRobot's tasks.parquet: a pandas frame indexed by the task text with a `task_index` column.

    Written with pyarrow alone; the pandas metadata makes `pandas.read_parquet` restore the index, as LeRobot
    expects."""
    rows = sorted(tasks.items(), key=lambda kv: kv[1])
    table = pa.table({"task_index": [i for _, i in rows], "__index_level_0__": [t for t, _ in rows]})
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": None,
                "field_name": "__index_level_0__",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
    }
    return table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")
