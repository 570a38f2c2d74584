#!/usr/bin/env python3
"""Training-loader throughput on a dataset (default: PushT): samples/s of `ChunkDataset.get_batch`.

Rows: cold (a fresh frame cache is built first, and its build time counts), warm (the cache exists),
per-sample `__getitem__` on the warm cache, and decoding the video for every batch (no cache) for comparison.
Random indices from a fixed seed, batch 8 by default, ACT's chunk size 100.

    .venv/bin/python scripts/bench_loader.py          # pusht via $EDGEACT_DATASET_MIRROR or the cache
    .venv/bin/python scripts/bench_loader.py --dataset path/to/lerobot_folder --batch 8 --seconds 5
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from edgeact.train.data import ChunkDataset, LeRobotDataset, resolve_dataset


def rate(fn, batch: int, *, seconds: float, max_batches: int | None = None) -> tuple[float, int]:
    """(samples per second, batches run) calling fn() for about `seconds` (at least one call)."""
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or (max_batches is not None and n >= max_batches):
            return n * batch / elapsed, n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="pusht")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--chunk-size", type=int, default=100)
    p.add_argument("--seconds", type=float, default=5.0, help="time per warm measurement")
    p.add_argument("--decode-batches", type=int, default=40, help="batches for the decode-per-sample row")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    ds = LeRobotDataset(resolve_dataset(args.dataset))
    rng = np.random.default_rng(args.seed)
    n = ds.meta.total_frames

    def batches(chunks: ChunkDataset):
        return lambda: chunks.get_batch(rng.integers(0, len(chunks), args.batch))

    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeact-bench-cache-") as cache:
        t0 = time.perf_counter()
        cold = ChunkDataset(ds, args.chunk_size, cache_dir=Path(cache), progress=False)
        build = time.perf_counter() - t0
        sps, nb = rate(batches(cold), args.batch, seconds=args.seconds)
        # Cold: one epoch's worth of samples, the cache build charged to it.
        epoch_cold = n / (build + n / sps)
        rows.append(("cold: build cache + 1 epoch", epoch_cold, f"cache build {build:.1f} s for {n} frames"))
        warm = ChunkDataset(ds, args.chunk_size, cache_dir=Path(cache), progress=False)
        sps, nb = rate(batches(warm), args.batch, seconds=args.seconds)
        rows.append(("warm: get_batch", sps, f"{nb} batches"))
        one = rate(
            lambda: [warm[int(i)] for i in rng.integers(0, len(warm), args.batch)],
            args.batch,
            seconds=args.seconds,
        )
        rows.append(("warm: __getitem__ x batch", one[0], f"{one[1]} batches"))
    nocache = ChunkDataset(ds, args.chunk_size, frame_cache=False)
    sps, nb = rate(batches(nocache), args.batch, seconds=args.seconds, max_batches=args.decode_batches)
    rows.append(("decode per sample (no cache)", sps, f"{nb} batches"))

    print(f"dataset {ds.root} ({ds.meta.total_episodes} episodes, {n} frames, cameras {ds.meta.camera_keys})")
    print(f"batch {args.batch}, chunk {args.chunk_size}, cpus {os.cpu_count()}")
    print(f"{'loader':34s} {'samples/s':>12s}  notes")
    for name, value, note in rows:
        print(f"{name:34s} {value:12.0f}  {note}")
    warm_sps = rows[1][1]
    print(
        f"warm / decode-per-sample: {warm_sps / rows[-1][1]:.0f}x;  target >= 2000 samples/s warm: "
        f"{'met' if warm_sps >= 2000 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
