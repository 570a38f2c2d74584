"""Cameras stored as PNG bytes inside the parquet files (LeRobot `dtype: image`)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from edgeact.train.data import ChunkDataset, LeRobotDataset
from edgeact.train.data.render import write_png
from edgeact.train.data.synthetic import make_synthetic_dataset, synthetic_episode


def test_png_images_in_parquet(tmp_path):
    root = make_synthetic_dataset(tmp_path / "img", episodes=2, length=6, cameras=())
    frames = np.concatenate(
        [
            synthetic_episode(e, 6, cameras=("observation.image",), image_hw=(24, 32))["observation.image"]
            for e in (0, 1)
        ]
    )  # (12, 24, 32, 3)
    blobs = []
    for i, img in enumerate(frames):
        write_png(img, tmp_path / "f.png")
        blobs.append({"bytes": (tmp_path / "f.png").read_bytes(), "path": f"frame_{i:06d}.png"})
    data = root / "data" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(data)
    pq.write_table(table.append_column("observation.image", pa.array(blobs)), data)
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"]["observation.image"] = {"dtype": "image", "shape": [24, 32, 3], "names": None}
    (root / "meta" / "info.json").write_text(json.dumps(info))

    ds = LeRobotDataset(root)
    assert ds.meta.camera_keys == ["observation.image"]
    assert "observation.image" not in ds.columns  # images stay on disk until asked for
    np.testing.assert_array_equal(
        ds.read_frames("observation.image", [7, 2]), frames[[7, 2]]
    )  # PNG is lossless
    batch = ChunkDataset(ds, 3, cache_dir=tmp_path / "cache", progress=False).get_batch([0, 11])
    np.testing.assert_array_equal(batch["observation.image"], frames[[0, 11]].transpose(0, 3, 1, 2))
