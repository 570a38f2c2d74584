"""The frame cache on a disk without room: a clear error before building, no leftover file (issue 12)."""

from __future__ import annotations

import errno
import os
from collections import namedtuple

import pytest
from edgeact.train.data import ChunkDataset, DatasetError, LeRobotDataset
from edgeact.train.data import frame_cache as fc

Usage = namedtuple("Usage", "total used free")


def test_too_little_free_space_is_refused_before_building(tiny_dataset, tmp_path, monkeypatch):
    ds = LeRobotDataset(tiny_dataset)
    assert fc.cache_bytes(ds) == 90 * 64 * 64 * 3
    monkeypatch.setattr(fc.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(
        DatasetError, match=r"frame cache for .*: needs 1.1 MB at .*, and only 1 MB are free;.*frame_cache"
    ):
        ChunkDataset(ds, 4, cache_dir=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_disk_full_while_allocating_leaves_nothing(tiny_dataset, tmp_path, monkeypatch):
    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fc.os, "posix_fallocate", full)
    with pytest.raises(DatasetError, match=r"frame cache for .*: needs 1.1 MB at .*the disk is full"):
        ChunkDataset(LeRobotDataset(tiny_dataset), 4, cache_dir=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_cache_still_builds(tiny_dataset, tmp_path):
    chunks = ChunkDataset(LeRobotDataset(tiny_dataset), 4, cache_dir=tmp_path / "cache", progress=False)
    assert chunks.get_batch([0, 89])["observation.image"].shape == (2, 3, 64, 64)
    (folder,) = (tmp_path / "cache").iterdir()
    assert (folder / "observation.image.u8").stat().st_size == 90 * 64 * 64 * 3
