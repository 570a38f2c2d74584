"""Camera features stored as images inside the parquet files (LeRobot `dtype: image`): PNG/JPEG bytes per row.

LeRobot writes such a column as a struct `{bytes: binary, path: string}`. Frames are decoded with PyAV's image
decoders (no extra dependency), on demand, one data file at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import av
import numpy as np

from .errors import DatasetFormatError, VideoDecodeError
from .meta import read_parquet

if TYPE_CHECKING:
    from .reader import LeRobotDataset


def decode_image_bytes(data: bytes, where: str) -> np.ndarray:
    """PNG or JPEG bytes -> uint8 (H, W, 3)."""
    codec = "mjpeg" if data[:2] == b"\xff\xd8" else "png"
    try:
        ctx = av.CodecContext.create(codec, "r")
        frames = ctx.decode(av.Packet(data))
        if not frames:
            frames = ctx.decode(None)
        return frames[0].to_ndarray(format="rgb24")
    except (av.FFmpegError, IndexError) as err:
        raise VideoDecodeError(f"{where}: cannot decode the stored image: {err}") from err


def read_image_rows(ds: LeRobotDataset, key: str, rows: np.ndarray) -> np.ndarray:
    """Frames of an image-typed camera at global rows: uint8 (n, H, W, 3)."""
    h, w, c = ds.meta.features[key]["shape"]
    out = np.empty((len(rows), h, w, c), dtype=np.uint8)
    starts = [s for s, _ in ds._file_starts] + [len(ds)]
    for f, (start, path) in enumerate(ds._file_starts):
        pick = np.flatnonzero((rows >= start) & (rows < starts[f + 1]))
        if not len(pick):
            continue
        column = read_parquet(path, [key]).column(key).to_pylist()
        for i in pick:
            cell = column[rows[i] - start]
            data = cell.get("bytes") if isinstance(cell, dict) else cell
            if not data:
                raise DatasetFormatError(f"{path}: column {key!r}: row {rows[i]} holds no image bytes")
            img = decode_image_bytes(data, f"{path}: column {key!r}, row {rows[i]}")
            if img.shape != (h, w, c):
                raise DatasetFormatError(
                    f"{path}: column {key!r}, row {rows[i]}: image {img.shape} != {(h, w, c)}"
                )
            out[i] = img
    return out
