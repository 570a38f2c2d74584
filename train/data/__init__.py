"""edgeact.train.data: LeRobot datasets (v3.0, v2.1), importers, windowing into training samples, frame cache.

Public API (see docs/datasets.md):
    resolve_dataset(name_or_path, *, mirror=None) -> Path
    LeRobotDataset(root)                     .meta, .column(key), .read_frames(camera, rows)
    ChunkDataset(dataset, chunk_size, ...)   __len__, __getitem__, get_batch(indices)
    LeRobotWriter(root, fps=, features=)     add_episode(arrays, task), finalize()
    import_diffusion_policy_zarr(zarr, out)
Everything here is torch-free.
"""

from .chunks import ChunkDataset
from .errors import (
    DatasetError,
    DatasetExistsError,
    DatasetFormatError,
    DatasetNotFoundError,
    VideoDecodeError,
)
from .meta import DatasetMeta, EpisodeInfo, VideoRef
from .reader import LeRobotDataset
from .resolve import resolve_dataset
from .video import VideoSettings
from .writer import LeRobotWriter
from .zarr_import import import_diffusion_policy_zarr

__all__ = [
    "ChunkDataset",
    "DatasetError",
    "DatasetExistsError",
    "DatasetFormatError",
    "DatasetMeta",
    "DatasetNotFoundError",
    "EpisodeInfo",
    "LeRobotDataset",
    "LeRobotWriter",
    "VideoDecodeError",
    "VideoRef",
    "VideoSettings",
    "import_diffusion_policy_zarr",
    "resolve_dataset",
]
