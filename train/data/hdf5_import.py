"""Import ACT/ALOHA HDF5 episode folders (`episode_0.hdf5`, `episode_1.hdf5`, ...) into LeRobot v3.0.

Each file holds `/observations/qpos` (T, J), optionally `/observations/qvel` and `/observations/effort`,
`/observations/images/<camera>` (T, H, W, 3) uint8 and `/action` (T, J) (the layout of the ACT repository's
`record_sim_episodes.py` and ALOHA's recorder). ALOHA's compressed variant (images stored as padded JPEG bytes
(T, L) with the file attribute `compress`) is decoded too. Mapping, as in LeRobot's ALOHA datasets: qpos ->
`observation.state`, qvel -> `observation.velocity`, effort -> `observation.effort`, camera c ->
`observation.images.<c>`. The import is atomic.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from .errors import DatasetFormatError, DatasetNotFoundError
from .images import decode_image_bytes
from .video import VideoSettings
from .writer import LeRobotWriter

log = logging.getLogger(__name__)

ALOHA_JOINTS = [
    f"{side}_{joint}"
    for side in ("left", "right")
    for joint in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
]
_VECTORS = {"observations/qpos": "observation.state", "observations/qvel": "observation.velocity"}
_VECTORS["observations/effort"] = "observation.effort"


def _episode_files(folder: Path) -> list[Path]:
    files = [p for p in folder.glob("*.hdf5") if re.search(r"(\d+)\.hdf5$", p.name)]
    if not files:
        raise DatasetNotFoundError(f"{folder}: no episode_<n>.hdf5 files")
    return sorted(files, key=lambda p: int(re.search(r"(\d+)\.hdf5$", p.name).group(1)))


def _read_episode(path: Path, cameras: list[str] | None) -> dict[str, np.ndarray]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DatasetFormatError(f"{path}: not a readable HDF5 file: {err}") from err
    with f:
        out: dict[str, np.ndarray] = {}
        for src, dst in _VECTORS.items():
            if src in f:
                out[dst] = np.asarray(f[src], dtype=np.float32)
        if "action" not in f or "observation.state" not in out:
            raise DatasetFormatError(f"{path}: needs /observations/qpos and /action")
        out["action"] = np.asarray(f["action"], dtype=np.float32)
        images = f.get("observations/images")
        names = sorted(images) if images is not None else []
        for cam in cameras if cameras is not None else names:
            if cam not in names:
                raise DatasetFormatError(f"{path}: no camera /observations/images/{cam} (have {names})")
            out[f"observation.images.{cam}"] = _camera(f, path, cam)
    lengths = {k: len(v) for k, v in out.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetFormatError(f"{path}: datasets have different lengths {lengths}")
    for key, values in out.items():
        if values.dtype == np.float32 and not np.isfinite(values).all():
            bad = int(np.argmax(~np.isfinite(values.reshape(len(values), -1)).all(axis=1)))
            raise DatasetFormatError(f"{path}: column {key!r}: NaN or inf at frame {bad}")
    return out


def _camera(f, path: Path, cam: str) -> np.ndarray:
    data = f[f"observations/images/{cam}"]
    if data.ndim == 4 and data.dtype == np.uint8 and data.shape[-1] == 3:
        return np.asarray(data)
    if data.ndim == 2 and data.dtype == np.uint8:  # ALOHA's compressed layout: padded JPEG bytes per frame
        raw = np.asarray(data)
        lengths = None
        if "compress_len" in f:
            cams = sorted(f["observations/images"])
            lengths = np.asarray(f["compress_len"])[cams.index(cam)].astype(np.int64)
        frames = [
            decode_image_bytes(
                row[: lengths[t]].tobytes() if lengths is not None else row.tobytes(), f"{path}: {cam}[{t}]"
            )
            for t, row in enumerate(raw)
        ]
        return np.stack(frames)
    raise DatasetFormatError(f"{path}: /observations/images/{cam} has shape {data.shape} {data.dtype}")


def import_aloha_hdf5(
    folder: str | Path,
    out_root: str | Path,
    *,
    fps: int = 50,
    task: str = "",
    robot_type: str = "aloha",
    cameras: list[str] | None = None,
    video: VideoSettings | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Convert every `*<n>.hdf5` episode in `folder` (sorted by n) into a v3.0 dataset at `out_root`."""
    from .frame_cache import _progress

    folder = Path(folder)
    files = _episode_files(folder)
    first = _read_episode(files[0], cameras)
    features = {}
    for key, values in first.items():
        if key.startswith("observation.images."):
            features[key] = {"dtype": "video", "shape": list(values.shape[1:])}
        else:
            dim = values.shape[1]
            names = ALOHA_JOINTS if dim == len(ALOHA_JOINTS) else [f"joint_{i}" for i in range(dim)]
            features[key] = {"dtype": "float32", "shape": [dim], "names": names}
    bar = _progress(len(files), f"import {folder.name}", progress)
    extra = {"edgeact_source": {"format": "aloha_hdf5", "path": folder.name}}
    with LeRobotWriter(
        out_root,
        fps=fps,
        features=features,
        robot_type=robot_type,
        video=video,
        overwrite=overwrite,
        extra_info=extra,
    ) as writer:
        for i, path in enumerate(files):
            arrays = first if i == 0 else _read_episode(path, cameras)
            if set(arrays) != set(features):
                raise DatasetFormatError(f"{path}: features {sorted(arrays)} differ from {files[0].name}'s")
            writer.add_episode(arrays, task=task)
            bar.update(1)
    bar.close()
    log.info("imported %d ALOHA episodes from %s into %s", len(files), folder, out_root)
    return Path(out_root)
