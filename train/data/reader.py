"""LeRobotDataset: a LeRobot dataset folder (v3.0, or v2.1 through `v21.py`) read into numpy.

Every non-camera column is loaded once into memory (PushT: 25,650 rows, well under a megabyte per feature);
camera frames stay in the mp4 files and are decoded on demand (`read_frames`) or, for training, once into the
frame cache (`frame_cache.py`). Torch-free.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from .deviations import Deviations
from .errors import DatasetFormatError, DatasetNotFoundError
from .meta import CAMERA_DTYPES, DatasetMeta, check_declared_widths, load_meta_v3, read_json, read_parquet
from .video import decode_at

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE_S = 1e-4  # LeRobot's `tolerance_s`: how far a timestamp may sit from frame_index / fps


class LeRobotDataset:
    """A local LeRobot dataset. `meta` holds the metadata; `column(key)` a whole column as a numpy array."""

    def __init__(self, root: str | Path, *, timestamp_tolerance_s: float = DEFAULT_TOLERANCE_S) -> None:
        if timestamp_tolerance_s < 0:
            raise ValueError(f"timestamp_tolerance_s must be >= 0, got {timestamp_tolerance_s}")
        self.root = Path(root)
        self.tolerance_s = timestamp_tolerance_s
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            from .resolve import not_a_dataset

            raise not_a_dataset(self.root)
        version = str(read_json(info_path).get("codebase_version", ""))
        dev = Deviations(str(self.root))
        if version.startswith("v3"):
            self.meta: DatasetMeta = load_meta_v3(self.root, dev)
        elif version.startswith("v2"):
            from .v21 import load_meta_v21

            self.meta = load_meta_v21(self.root, dev)
        else:
            raise DatasetFormatError(
                f"{info_path}: codebase_version {version!r} is not supported (v2.1, v3.0)"
            )
        self._columns = self._load_columns(dev)
        dev.report()

    # -- columns --------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.meta.total_frames

    def column(self, key: str) -> np.ndarray:
        """All rows of a non-camera column: (N,) for scalars, (N, D) for vectors; float columns as float32."""
        try:
            return self._columns[key]
        except KeyError:
            raise KeyError(f"{self.root}: no column {key!r}; have {sorted(self._columns)}") from None

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def _load_columns(self, dev: Deviations) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {}
        file_starts, total = [], 0
        for path in self.meta.data_files:
            table = read_parquet(path)
            file_starts.append((total, path))
            total += table.num_rows
            for name in table.schema.names:
                feat = self.meta.features.get(name, {})
                if feat.get("dtype") in CAMERA_DTYPES or name.startswith("__"):
                    continue
                parts.setdefault(name, []).append(_to_numpy(table.column(name), name, path, dev))
        self._file_starts = file_starts
        if total != self.meta.total_frames:
            raise DatasetFormatError(
                f"{self.root}: data files hold {total} rows but the episode metadata says "
                f"{self.meta.total_frames} frames ({[str(p) for p in self.meta.data_files]})"
            )
        cols = {}
        for k, v in parts.items():
            if len(v) != len(self.meta.data_files):
                raise DatasetFormatError(f"{self.root}: column {k!r} is missing from some data files")
            cols[k] = np.concatenate(v)
        check_declared_widths(
            self.meta.features, cols, self.meta.data_files, self.root / "meta" / "info.json"
        )
        self._check_standard_columns(cols, dev)
        self._check_finite(cols)
        return cols

    def _where(self, row: int) -> tuple[Path, int, int]:
        """(data file, episode index, frame in the episode) of a global row, for error messages."""
        path = next(p for start, p in reversed(self._file_starts) if start <= row)
        e = next((e for e in self.meta.episodes if e.from_frame <= row < e.to_frame), None)
        return (path, e.index, row - e.from_frame) if e is not None else (path, -1, -1)

    def _check_standard_columns(self, cols: dict[str, np.ndarray], dev: Deviations) -> None:
        n = self.meta.total_frames
        expected_ep = np.empty(n, dtype=np.int64)
        expected_fi = np.empty(n, dtype=np.int64)
        for e in self.meta.episodes:
            expected_ep[e.from_frame : e.to_frame] = e.index
            expected_fi[e.from_frame : e.to_frame] = np.arange(e.length)
        for key, expected in (("episode_index", expected_ep), ("frame_index", expected_fi)):
            if key not in cols:
                dev.note(f"column {key!r} missing, derived from the episode metadata", n)
                cols[key] = expected
                continue
            bad = np.flatnonzero(cols[key].reshape(n) != expected)
            if len(bad):
                path, ep, _ = self._where(int(bad[0]))
                held = cols[key].reshape(n)[bad[0]]
                raise DatasetFormatError(
                    f"{path}: episode {ep}, column {key!r}: row {bad[0]} holds {held}, "
                    f"the episode metadata implies {expected[bad[0]]} ({len(bad)} rows disagree)"
                )
        if "index" not in cols:
            dev.note("column 'index' missing, derived from row order", n)
            cols["index"] = np.arange(n, dtype=np.int64)
        if "task_index" not in cols:
            dev.note("column 'task_index' missing, all rows set to task 0", n)
            cols["task_index"] = np.zeros(n, dtype=np.int64)
        nominal = (expected_fi / self.meta.fps).astype(np.float64)
        if "timestamp" not in cols:
            dev.note("column 'timestamp' missing, derived as frame_index / fps", n)
            cols["timestamp"] = nominal.astype(np.float32)
        drift = np.abs(cols["timestamp"].astype(np.float64) - nominal) > self.tolerance_s
        dev.note(
            f"timestamps drift from frame_index / fps by more than {self.tolerance_s} s; windows use frame "
            "indices and video frames are located at frame_index / fps",
            int(drift.sum()),
            f"row {int(np.argmax(drift))}" if drift.any() else "",
        )
        self._timestamp_ok = ~drift

    def _check_finite(self, cols: dict[str, np.ndarray]) -> None:
        for key, values in cols.items():
            if values.dtype.kind != "f":
                continue
            bad_rows = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
            if bad_rows.any():
                row = int(np.argmax(bad_rows))
                path, ep, frame = self._where(row)
                raise DatasetFormatError(
                    f"{path}: episode {ep}, column {key!r}: NaN or inf at row {row} (frame {frame}, "
                    f"{int(bad_rows.sum())} rows affected)"
                )

    # -- camera frames -------------------------------------------------------------------------------------
    def video_times(self, key: str, rows: np.ndarray) -> tuple[list, np.ndarray]:
        """For global rows: the episode of each and the presentation time (s) of its frame inside the video
        file."""
        rows = np.asarray(rows, dtype=np.int64)
        ep_idx = self.column("episode_index").reshape(-1)[rows]
        ts = np.where(
            self._timestamp_ok[rows],
            self.column("timestamp").reshape(-1)[rows].astype(np.float64),
            self.column("frame_index").reshape(-1)[rows] / self.meta.fps,
        )
        pos = {e.index: i for i, e in enumerate(self.meta.episodes)}
        eps = [self.meta.episodes[pos[int(i)]] for i in ep_idx]
        return eps, np.array([e.videos[key].from_timestamp for e in eps]) + ts

    def read_frames(self, key: str, rows) -> np.ndarray:
        """Decode the frames of camera `key` at global rows: uint8 (n, H, W, 3). Slow path (seek + decode)."""
        if key not in self.meta.camera_keys:
            raise KeyError(f"{self.root}: {key!r} is not a camera; cameras are {self.meta.camera_keys}")
        if self.meta.features[key]["dtype"] == "image":
            from .images import read_image_rows

            return read_image_rows(self, key, np.asarray(rows, dtype=np.int64))
        rows = np.asarray(rows, dtype=np.int64)
        h, w, c = self.meta.features[key]["shape"]
        out = np.empty((len(rows), h, w, c), dtype=np.uint8)
        eps, times = self.video_times(key, rows)
        by_file: dict[Path, list[int]] = {}
        for i, e in enumerate(eps):
            by_file.setdefault(e.videos[key].path, []).append(i)
        for path, idx in by_file.items():
            if not path.is_file():
                raise DatasetNotFoundError(f"{path}: video file missing (camera {key!r})")
            out[idx] = decode_at(path, times[idx], tolerance_s=max(self.tolerance_s, 1e-4))
        return out

    def episode_frames(self, key: str, episode: int) -> np.ndarray:
        """All frames of one episode of camera `key`: uint8 (T, H, W, 3)."""
        e = next(e for e in self.meta.episodes if e.index == episode)
        return self.read_frames(key, np.arange(e.from_frame, e.to_frame))


def _to_numpy(col: pa.ChunkedArray, key: str, path: Path, dev: Deviations) -> np.ndarray:
    """A parquet column as numpy: scalars (N,), fixed or variable lists (N, D); float64 narrowed to
    float32."""
    arr = col.combine_chunks()
    n = len(arr)
    if (
        pa.types.is_fixed_size_list(arr.type)
        or pa.types.is_list(arr.type)
        or pa.types.is_large_list(arr.type)
    ):
        if arr.null_count:
            raise DatasetFormatError(f"{path}: column {key!r} has {arr.null_count} null rows")
        flat = arr.flatten()
        if n and len(flat) % n:
            raise DatasetFormatError(f"{path}: column {key!r} has rows of different lengths")
        values = flat.to_numpy(zero_copy_only=False).reshape(n, -1 if n else 0)
    else:
        if arr.null_count:
            raise DatasetFormatError(f"{path}: column {key!r} has {arr.null_count} null rows")
        values = arr.to_numpy(zero_copy_only=False)
    if values.dtype == np.float64:
        dev.note("float64 column read as float32", 1, f"{path.name}:{key}")
        values = values.astype(np.float32)
    return values
