"""Decode every camera once into a memory-mapped uint8 array so training never waits on video decoding.

Layout: `<cache_dir>/<key>/<camera>.u8` holds (N, H, W, 3) uint8 frames in global row order, and `meta.json`
(shape per camera) is written last, so a cache folder without it is unfinished and gets rebuilt. `<key>` is a
hash
of the dataset's files (relative path, size, modification time) and the exact bytes of `meta/info.json`: any
change
to the dataset gives a new key and a fresh cache. The cache root is `$EDGEACT_CACHE_DIR/frames` (default
`~/.cache/edgeact/frames`). Builds go to a temporary folder renamed into place, so a killed build leaves no
half-written cache behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from .errors import DatasetError, VideoDecodeError
from .reader import LeRobotDataset
from .video import iter_frames

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    base = os.environ.get("EDGEACT_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "edgeact") / "frames"


def dataset_key(root: Path) -> str:
    """A hash of the dataset's files under meta/, data/ and videos/ (relative path, size and mtime of each)
    plus the bytes of info.json; hidden files (such as a download tool's bookkeeping) do not count."""
    h = hashlib.sha256()
    files = [p for sub in ("meta", "data", "videos") for p in (root / sub).rglob("*") if p.is_file()]
    for path in sorted(
        p for p in files if not any(part.startswith(".") for part in p.relative_to(root).parts)
    ):
        stat = path.stat()
        h.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    h.update((root / "meta" / "info.json").read_bytes())
    return h.hexdigest()[:24]


def _safe(key: str) -> str:
    return key.replace("/", "_")


def open_frame_cache(
    dataset: LeRobotDataset, *, cache_dir: str | Path | None = None, progress: bool = True
) -> dict[str, np.ndarray]:
    """Camera key -> read-only memmap uint8 (N, H, W, 3) over all rows; builds the cache first if needed."""
    if not dataset.meta.camera_keys:
        return {}
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = base / dataset_key(dataset.root)
    if not (folder / "meta.json").is_file():
        _build(dataset, folder, progress)
    meta = json.loads((folder / "meta.json").read_text())
    return {
        key: np.memmap(
            folder / f"{_safe(key)}.u8", dtype=np.uint8, mode="r", shape=tuple(meta["shapes"][key])
        )
        for key in dataset.meta.camera_keys
    }


# Room left on the disk beyond the cache itself, so that building it never fills the disk for everyone else.
FREE_MARGIN_BYTES = 256 * 2**20


def cache_bytes(dataset: LeRobotDataset) -> int:
    """Bytes the frame cache of `dataset` takes: N x H x W x C per camera."""
    n = dataset.meta.total_frames
    return sum(n * math.prod(dataset.meta.features[k]["shape"]) for k in dataset.meta.camera_keys)


def _no_room(dataset: LeRobotDataset, where: Path, need: int, free: int | None) -> DatasetError:
    have = (
        f"plus {FREE_MARGIN_BYTES / 1e6:,.0f} MB kept free, and only {free / 1e6:,.0f} MB are free"
        if free is not None
        else "and the disk is full"
    )
    return DatasetError(
        f"frame cache for {dataset.root}: needs {need / 1e6:,.1f} MB at {where}, {have}; free space, point "
        "EDGEACT_CACHE_DIR at a larger disk, or train with --frame_cache=false (decodes every sample, slower)"
    )


def _allocate(path: Path, size: int) -> None:
    """Reserve the file's blocks now: writing into a sparse memmap on a full disk ends in SIGBUS instead."""
    with open(path, "wb") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, size)
        except OSError as err:
            if err.errno in (
                errno.EOPNOTSUPP,
                errno.ENOSYS,
                errno.EINVAL,
            ):  # no fallocate on this file system
                f.truncate(size)
            else:
                raise


def _build(dataset: LeRobotDataset, folder: Path, progress: bool) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    need = cache_bytes(dataset)
    free = shutil.disk_usage(folder.parent).free
    if need + FREE_MARGIN_BYTES > free:
        raise _no_room(dataset, folder.parent, need, free)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        _fill(dataset, folder, tmp, progress)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if err.errno == errno.ENOSPC:
            raise _no_room(dataset, folder.parent, need, None) from err
        raise DatasetError(f"frame cache {tmp}: cannot write ({err.strerror or err})") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fill(dataset: LeRobotDataset, folder: Path, tmp: Path, progress: bool) -> None:
    """Decode every camera into `tmp`, then rename it to `folder` (meta.json last: it marks a done cache)."""
    shapes = {}
    n = dataset.meta.total_frames
    bar = _progress(n * len(dataset.meta.camera_keys), f"frame cache {dataset.root.name}", progress)
    for key in dataset.meta.camera_keys:
        h, w, c = dataset.meta.features[key]["shape"]
        _allocate(tmp / f"{_safe(key)}.u8", n * h * w * c)
        frames = np.memmap(tmp / f"{_safe(key)}.u8", dtype=np.uint8, mode="r+", shape=(n, h, w, c))
        if dataset.meta.features[key]["dtype"] == "image":
            for e in dataset.meta.episodes:
                frames[e.from_frame : e.to_frame] = dataset.read_frames(
                    key, np.arange(e.from_frame, e.to_frame)
                )
                bar.update(e.length)
        else:
            _decode_camera(dataset, key, frames, bar)
        frames.flush()
        del frames
        shapes[key] = [n, h, w, c]
    bar.close()
    (tmp / "meta.json").write_text(json.dumps({"root": str(dataset.root), "shapes": shapes}))
    if folder.exists():  # another process finished first; keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        return
    os.replace(tmp, folder)
    log.info("frame cache for %s built at %s", dataset.root, folder)


def _decode_camera(dataset: LeRobotDataset, key: str, frames: np.ndarray, bar) -> None:
    """Decode each video file of camera `key` front to back, placing every frame at its row."""
    rows = np.arange(dataset.meta.total_frames)
    eps, times = dataset.video_times(key, rows)
    by_file: dict[Path, list[int]] = {}
    for row, e in zip(rows, eps, strict=False):
        by_file.setdefault(e.videos[key].path, []).append(int(row))
    tol = max(dataset.tolerance_s, 1e-4)
    for path, file_rows in by_file.items():
        want = times[file_rows]  # (n,) presentation times in this file, ascending within the file
        order = np.argsort(want, kind="stable")
        sorted_t, sorted_rows = want[order], np.asarray(file_rows)[order]
        filled = np.zeros(len(sorted_t), dtype=bool)
        for t, image in iter_frames(path):
            j = int(np.searchsorted(sorted_t, t - tol))
            while j < len(sorted_t) and abs(sorted_t[j] - t) <= tol:
                frames[sorted_rows[j]] = image
                filled[j] = True
                j += 1
            bar.update(1)
        if not filled.all():
            first = int(np.argmin(filled))
            row = int(sorted_rows[first])
            e = eps[row]
            raise VideoDecodeError(
                f"{path}: episode {e.index}, column {key!r}: no frame at t={sorted_t[first]:.6f}s "
                f"(row {row}; {int((~filled).sum())} frames missing)"
            )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="frame", leave=False)
