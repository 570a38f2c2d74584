"""The two sides `edgeact-bench` times against each other on the same inputs: the C++ runtime's `Session.step`
(`RuntimeStepper`) and PyTorch eager `predict_chunk` with the reference ensembler (`EagerStepper`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from edgeact.runtime.record import camera_feature
from edgeact.runtime.runner import percentiles_us
from edgeact.train.features import camera_name

if TYPE_CHECKING:
    from edgeact.export.bench import BenchSize


def bench_inputs(size: BenchSize, seed: int = 1) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Fixed random frames (camera name -> uint8 (H, W, 3)) and state float32 (S,)."""
    rng = np.random.default_rng(seed)
    images = {}
    for key, h, w in size.cameras:
        images[camera_name(key)] = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    state = rng.uniform(50, 450, size=size.state_dim).astype(np.float32)
    return images, state


class RuntimeStepper:
    """One C++ `Session.step` per call (ensemble mode), recording its stage timings (ns)."""

    STAGES = ("pre", "infer", "ensemble", "post", "core", "step")

    def __init__(self, model: Path, size: BenchSize, ticks: int, threads: int) -> None:
        from edgeact.runtime.core import Policy, PolicyParams

        self.policy = Policy.load(model, PolicyParams(intra_op_threads=threads, warmup_runs=3))
        self.session = self.policy.session()
        self.session.reset()
        self.images, self.state = bench_inputs(size)
        self.rows = {k: np.zeros(ticks, np.int64) for k in self.STAGES}

    def __call__(self, i: int) -> None:
        t0 = time.perf_counter_ns()
        command, status = self.session.step(self.images, self.state)
        self.rows["step"][i] = time.perf_counter_ns() - t0
        if command is None or status.is_fault:
            raise RuntimeError(f"runtime step {i} returned {status.name}")
        t = self.session.last_timings
        self.rows["pre"][i], self.rows["infer"][i] = t.pre_ns, t.infer_ns
        self.rows["ensemble"][i], self.rows["post"][i] = t.ensemble_ns, t.post_ns
        self.rows["core"][i] = t.total_ns

    def summary(self) -> dict[str, Any]:
        rt = self.rows
        rows = rt | {"overhead": rt["core"] - rt["infer"], "python": rt["step"] - rt["core"]}
        return {k: percentiles_us(v) for k, v in rows.items()}


class EagerStepper:
    """One PyTorch eager step per call: HWC -> CHW tensors, `predict_chunk`, the reference ensembler."""

    def __init__(self, policy: Any, size: BenchSize, ticks: int, threads: int) -> None:
        import torch
        from edgeact.runtime.ensemble_ref import ActionExecutor, ExecutionConfig

        torch.set_num_threads(threads)
        self.torch, self.policy = torch, policy
        images, state = bench_inputs(size)
        self.features = {camera_feature(n): img for n, img in images.items()}  # uint8 (H, W, 3) each
        self.state = state
        cfg = policy.config
        self.executor = ActionExecutor(
            ExecutionConfig(
                chunk_size=cfg.chunk_size,
                action_dim=size.action_dim,
                mode="ensemble",
                temporal_ensemble_coeff=cfg.temporal_ensemble_coeff,
            )
        )
        self.executor.reset()
        self.rows = {k: np.zeros(ticks, np.int64) for k in ("infer", "ensemble", "step")}
        with torch.inference_mode():
            for _ in range(3):  # warm-up, as the runtime's warmup_runs
                self._infer()

    def _infer(self) -> np.ndarray:
        torch = self.torch
        imgs = {
            k: torch.from_numpy(v).permute(2, 0, 1)[None] for k, v in self.features.items()
        }  # (1, 3, H, W)
        return self.policy.predict_chunk(imgs, torch.from_numpy(self.state)[None]).numpy()  # (1, k, A)

    def __call__(self, i: int) -> None:
        with self.torch.inference_mode():
            t0 = time.perf_counter_ns()
            chunk = self._infer()
            t1 = time.perf_counter_ns()
            self.executor.update(chunk)
            t2 = time.perf_counter_ns()
        self.rows["infer"][i], self.rows["ensemble"][i], self.rows["step"][i] = t1 - t0, t2 - t1, t2 - t0
