"""The one ACT training loop: deterministic sampling, AdamW, checkpoints, exact resume, DDP, SIGINT, NaN.

Determinism: the batch for step s is a pure function of (seed, s): position p = s*G + j of an endless stream
of epochs, epoch e being the permutation `default_rng([seed, e])` of the samples; and the torch RNG (dropout,
the CVAE's reparameterisation noise) is reseeded from (seed, rank, s) before each step. So a run resumed
from the checkpoint at step s continues exactly as the uninterrupted run would (on CPU, bit for bit).

Under `torchrun` (WORLD_SIZE > 1) the loop runs DDP (gloo on CPU, nccl on CUDA): rank r takes entries
[r*B, (r+1)*B) of the global batch of G = B x world size, and only rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgeact.train import checkpoint as ckpt_io
from edgeact.train.features import dataset_section, select_features
from edgeact.train.monitor import Monitor
from edgeact.train.optim import make_optimizer, make_scheduler
from edgeact.train.train_config import TrainConfig, TrainError, config_to_dict

log = logging.getLogger(__name__)


class NonFiniteLossError(TrainError):
    """The loss became NaN or infinite; the message names the step and the batch's sample indices."""


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class TrainResult:
    step: int  # the step count reached (number of optimizer steps done)
    checkpoint: Path | None  # the last checkpoint written (rank 0), or None
    interrupted: bool
    last_loss: float | None


def setup_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when WORLD_SIZE > 1; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainError(f"device={device!r}: CUDA is not available on this machine (use --device cpu)")
        dev = torch.device("cuda", info.local_rank) if world > 1 or device == "cuda" else torch.device(device)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return info, dev


def batch_indices(
    n: int, seed: int, step: int, global_batch: int, rank: int = 0, per_rank: int | None = None
):
    """Sample indices for `rank` at `step`: a slice of the global batch from the seeded epoch stream."""
    per_rank = global_batch if per_rank is None else per_rank
    start = step * global_batch + rank * per_rank
    pos = np.arange(start, start + per_rank, dtype=np.int64)
    epochs = pos // n
    out = np.empty(per_rank, dtype=np.int64)
    for e in np.unique(epochs):
        perm = np.random.default_rng([seed, int(e)]).permutation(n)
        sel = epochs == e
        out[sel] = perm[pos[sel] % n]
    return out


def step_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, dtype=np.uint64)[0] >> 1)


def to_device(
    batch: dict[str, np.ndarray], dev: torch.device, channels_last: bool
) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in batch.items():
        t = torch.from_numpy(np.ascontiguousarray(value))
        if t.ndim == 4 and channels_last:  # images (B, 3, H, W) uint8
            t = t.contiguous(memory_format=torch.channels_last)
        out[key] = t.to(dev, non_blocking=True)
    return out


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


class _StopFlag:
    """SIGINT/SIGTERM set a flag the loop checks after each step; a second SIGINT interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.set = False
        self.name = "a signal on another rank"  # which signal asked to stop, for the log
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if _in_main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        if self.set and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.set = True
        self.name = signal.Signals(signum).name
        log.warning(
            "%s: finishing this step, saving a checkpoint and stopping (Ctrl-C again to abort)",
            signal.Signals(signum).name,
        )

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class Trainer:
    """Holds the run's pieces; `run()` trains from the current step to `cfg.steps`."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = False) -> None:
        from edgeact.train.data import ChunkDataset, LeRobotDataset, resolve_dataset
        from edgeact.train.model import ACTPolicy

        self.cfg = cfg
        self.dist, self.device = setup_distributed(cfg.device)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.output = Path(cfg.output)
        last = ckpt_io.checkpoints_dir(self.output) / ckpt_io.LAST
        resume_from = ckpt_io.resolve_checkpoint(last) if resume else None
        if not resume and (last.exists() or last.is_symlink()):
            raise TrainError(
                f"{self.output} already holds a run ({last} exists): pass --resume to continue it, "
                "or choose another --output"
            )
        prev = ckpt_io.read_config(resume_from) if resume_from else None

        root = resolve_dataset(cfg.dataset)
        self.dataset = LeRobotDataset(root)
        features, stats = select_features(self.dataset.meta, cfg, root, prev)
        self.dataset_info = dataset_section(cfg, root, self.dataset.meta, features, stats)
        self.chunks = self._chunk_dataset(ChunkDataset)
        if len(self.chunks) == 0:
            raise TrainError(f"dataset {root}: no training samples (episodes={cfg.episodes})")

        torch.manual_seed(cfg.seed)  # parameter init is identical on every rank
        try:
            policy = ACTPolicy(cfg.policy, features, stats)
        except ValueError as err:
            raise TrainError(f"dataset {root}: the policy cannot use its features: {err}") from err
        policy.to(self.device)
        if cfg.channels_last:
            policy.to(memory_format=torch.channels_last)
        self.policy = policy
        self.optimizer = make_optimizer(policy, cfg, self.device)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.step = 0
        if resume_from is not None:
            ckpt_io.load_weights(policy, resume_from)
            self.step = ckpt_io.load_training_state(resume_from, self.optimizer, self.scheduler)
            log.info("resumed from %s at step %d", resume_from, self.step)
        self.model: torch.nn.Module = policy
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(policy, device_ids=ids)
        self.global_batch = cfg.batch_size * self.dist.world_size
        self.last_ckpt: Path | None = None

    # ------------------------------------------------------------------------------------------------ pieces
    def _chunk_dataset(self, chunk_cls: Any) -> Any:
        """Rank 0 builds the frame cache (decodes the videos once); the other ranks then open it."""
        cfg = self.cfg

        def build() -> Any:
            return chunk_cls(
                self.dataset,
                cfg.policy.chunk_size,
                episodes=cfg.episodes,
                frame_cache=cfg.frame_cache,
                progress=cfg.progress and self.dist.is_main,
            )

        if self.dist.world_size == 1:
            return build()
        chunks = build() if self.dist.is_main else None
        self._barrier()
        return chunks if chunks is not None else build()

    def indices(self, step: int) -> np.ndarray:
        return batch_indices(
            len(self.chunks), self.cfg.seed, step, self.global_batch, self.dist.rank, self.cfg.batch_size
        )

    def checkpoint_config(self) -> dict[str, Any]:
        return {
            "policy": config_to_dict(self.cfg.policy),
            "dataset": self.dataset_info,
            "train": config_to_dict(self.cfg),
            "world_size": self.dist.world_size,
        }

    def save(self) -> None:
        if self.dist.is_main:
            self.save_main()
        self._barrier()

    def _barrier(self) -> None:
        if self.dist.world_size > 1:
            torch.distributed.barrier()

    def _agree(self, nonfinite: bool, stop: bool) -> tuple[bool, bool]:
        """Every rank learns whether any rank saw a non-finite loss or a SIGINT (so none blocks alone)."""
        if self.dist.world_size == 1:
            return nonfinite, stop
        flags = torch.tensor([float(nonfinite), float(stop)], device=self.device)
        torch.distributed.all_reduce(flags)
        return bool(flags[0] > 0), bool(flags[1] > 0)

    def train_step(self, batch: dict[str, torch.Tensor], idx: np.ndarray, stop: bool) -> tuple[dict, bool]:
        cfg = self.cfg
        torch.manual_seed(step_seed(cfg.seed, self.dist.rank, self.step))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss, parts = self.model(batch)
        nonfinite, stop = self._agree(not bool(torch.isfinite(loss.detach())), stop)
        if nonfinite:
            raise NonFiniteLossError(
                f"non-finite loss {float(loss.detach()):.4g} at step {self.step} (rank {self.dist.rank}); "
                f"batch sample indices {idx.tolist()}; the last good checkpoint is {self.last_ckpt or 'none'}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = None
        if cfg.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        metrics = {"loss": float(loss.detach())}
        metrics.update({k: float(v) for k, v in parts.items()})
        if grad_norm is not None:
            metrics["grad_norm"] = float(grad_norm)
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        return metrics, stop

    # ---------------------------------------------------------------------------------------------------- run
    def run(self) -> TrainResult:
        cfg = self.cfg
        self.policy.train()
        monitor = Monitor(self.output, cfg, self.step, self.global_batch, enabled=self.dist.is_main)
        metrics: dict = {}
        interrupted = False
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)  # loads batch s+1 while step s computes
        try:
            with _StopFlag() as flag:
                nxt = pool.submit(self._load, self.step) if self.step < cfg.steps else None
                while self.step < cfg.steps:
                    idx, batch = nxt.result()
                    if self.step + 1 < cfg.steps:
                        nxt = pool.submit(self._load, self.step + 1)
                    metrics, stop = self.train_step(batch, idx, flag.set)
                    monitor.update(self.step, metrics)
                    if stop:
                        interrupted = True
                        break
                    if self.step % cfg.save_every == 0 and self.step < cfg.steps:
                        self.save()
                    if cfg.eval_every and self.step % cfg.eval_every == 0:
                        self._evaluate(monitor)
                self.save()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            monitor.close()
        if interrupted:
            log.warning("stopped by %s at step %d; resume with --resume", flag.name, self.step)
        return TrainResult(self.step, self.last_ckpt, interrupted, metrics.get("loss"))

    def _load(self, step: int) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        idx = self.indices(step)
        return idx, to_device(self.chunks.get_batch(idx), self.device, self.cfg.channels_last)

    def _evaluate(self, monitor: Monitor) -> None:
        """Closed-loop episodes; a better result (success rate, then average max overlap) than every earlier
        evaluation of the run is saved as a checkpoint and becomes `checkpoints/best`."""
        if self.dist.is_main:
            from edgeact.train.eval import evaluate_policy

            self.policy.eval()
            try:
                result = evaluate_policy(self.policy, self.cfg.eval, fps=self.dataset.meta.fps)
            finally:
                self.policy.train()
            summary = {**result.summary(), "step": self.step, "samples": self.step * self.global_batch}
            monitor.scalars(self.step, {f"eval/{k}": v for k, v in result.summary().items()})
            best = ckpt_io.read_best(self.output)
            if best is None or _eval_score(summary) > _eval_score(best):
                if self.last_ckpt is None or self.last_ckpt.name != ckpt_io.step_dir_name(self.step):
                    self.save_main()
                ckpt_io.mark_best(self.last_ckpt, summary)
            monitor.curve()
        self._barrier()

    def save_main(self) -> None:
        self.last_ckpt = ckpt_io.save_checkpoint(
            self.output,
            self.step,
            policy=self.policy,
            config=self.checkpoint_config(),
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            keep=self.cfg.keep_checkpoints,
        )


def _eval_score(summary: dict[str, Any]) -> tuple[float, float]:
    return float(summary["success_rate"]), float(summary["avg_max_overlap"])


def train(cfg: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Train `cfg` (resuming from `cfg.output/checkpoints/last` when asked); returns where it ended."""
    trainer = Trainer(cfg, resume=resume)
    t0 = time.perf_counter()
    result = trainer.run()
    log.info("trained to step %d in %.1f s", result.step, time.perf_counter() - t0)
    return result
